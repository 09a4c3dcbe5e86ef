"""`python -m position_svc` runs the position service."""

from position_svc.server import main

main()
