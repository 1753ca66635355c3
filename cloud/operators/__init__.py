"""HQ operator accounts: sign-in (password, TOTP for admins, optional client certificate) and roles (issue 14)."""
