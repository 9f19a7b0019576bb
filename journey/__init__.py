"""The domain core of parcours: vocabulary, data contract, catalog, policies, decisions, simulator.

This floor imports nothing from the other parcours packages, so it can be reasoned about alone.
"""
