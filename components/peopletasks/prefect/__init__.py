"""The Prefect components: ask a person, wait without holding a worker, go on."""
