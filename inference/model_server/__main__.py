"""`python -m inference.model_server --port 8500 --model_name lstm --model_base_path ...`"""

from inference.model_server.server import main

main()
