"""Event and condition reasons in one place, for users, dashboards and Argo CD health checks."""

# Decisions (Event reasons)
INITIALIZED = "Initialized"
BECAME_READY = "PrimaryReady"
CANARY_STARTED = "CanaryStarted"
WEIGHT_ADVANCED = "WeightAdvanced"
CHECK_FAILED = "CheckFailed"
PROMOTION_STARTED = "PromotionStarted"
PROMOTED = "Promoted"
ROLLED_BACK = "RolledBack"
CANARY_ABANDONED = "CanaryAbandoned"
RETRY_REQUESTED = "RetryRequested"
WAITING = "Waiting"
SKIPPED_FAILED_IMAGE = "FailedImageSkipped"

# Errors (Event reasons)
INVALID_SPEC = "InvalidSpec"
STACK_UPDATE_FAILED = "StackUpdateFailed"
NAME_CONFLICT = "NameConflict"
STACK_DESTROYED = "StackDestroyed"

# Condition types
CONDITION_READY = "Ready"
CONDITION_PROGRESSING = "Progressing"
CONDITION_PROMOTED = "Promoted"
CONDITION_STACK_SYNCED = "StackSynced"

# Condition reasons
PRIMARY_AVAILABLE = "PrimaryAvailable"
INITIALIZING = "Initializing"
CANARY_PROGRESSING = "CanaryProgressing"
PROMOTING = "Promoting"
IDLE = "Idle"
STACK_APPLIED = "StackApplied"
APPLYING = "Applying"
NOT_PROMOTED = "NotPromoted"
