"""HTTP routes, one module per API family; `app.py` assembles them."""
