"""The platform on one machine: gateway, mail + SMS catcher, process supervision, demo data."""
