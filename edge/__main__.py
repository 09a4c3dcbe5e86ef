"""`python -m edge` runs the edge (Socket.IO bridge)."""

from edge.server import main

main()
