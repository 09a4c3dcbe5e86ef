"""auth_svc: accounts, passwords, access and refresh tokens, preferences."""
