"""Readers of an existing fleet (issue 16): AWS ACM certificates, certbot lineages."""
