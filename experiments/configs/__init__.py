"""ml_collections configs, one module per dataset; each exposes ``get_config()``."""
