"""Helpers that build what tests need: servers, settings, documents."""
