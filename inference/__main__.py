from inference.server import main

main()
