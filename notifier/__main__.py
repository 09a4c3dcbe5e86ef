"""`python -m notifier` runs the Discord bot."""

from notifier.server import main

main()
