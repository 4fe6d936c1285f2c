"""Acts (sockets): the client side of the API server, for agents and commands.

The kind <-> REST path table they share with the API server is testbed/api/resources.py.

client.py     Client (get, list, create, update, update_status, apply, apply_all, delete,
              watch) and ApiError / Expired
informer.py   Informer: list, then watch, relist on 410 or a lost server; handlers and a cache
"""

from testbed.apiclient.client import ApiError, Client, Expired
from testbed.apiclient.informer import Informer

__all__ = ["ApiError", "Client", "Expired", "Informer"]
