"""The pure core: the CanaryApp model, the rollout state machine and every pure predicate it uses. No I/O."""
