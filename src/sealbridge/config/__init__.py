"""Files on disk that host-side code shares: node configurations, the description of a
running network (its endpoints), and the user keystore.

Host-side only. Below ``node``, ``devnet`` and ``client`` so that each can read what the
others wrote without importing one another.
"""
