"""The HTTP layer: schemas, array codec, routes and error mapping on top of xentropy."""
