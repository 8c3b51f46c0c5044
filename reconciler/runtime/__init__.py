"""The runtime: the work queue and loop, one reconcile pass, leader election, health and metrics."""
