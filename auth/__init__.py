"""Accounts: password hashing and the access/refresh token pair."""
