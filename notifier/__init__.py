"""The notifier: AIFX's Discord bot (slash commands, and DMs of signals and position
events delivered exactly once through its own ledger)."""
