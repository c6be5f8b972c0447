"""Gmail push notifications: parsing (notification), the shared path to a history sync (intake),
the push endpoint with OIDC verification (push, oidc) and the supervised pull listeners (pull, service).

`pull` and `service` load google-cloud-pubsub; import them only where pull is used.
"""
