"""Routing: routes over the road graph and trip travel times with joint uncertainty."""
