"""Forgeline."""
