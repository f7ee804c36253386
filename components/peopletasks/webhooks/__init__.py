"""Webhook delivery: outbox, signing, dispatcher."""
