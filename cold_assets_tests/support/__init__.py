"""Helpers the tests share: feeding and offloading, a throwaway PostgreSQL, the webserver harness, screenshots."""
