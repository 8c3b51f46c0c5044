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
NO_CANARY_TRAFFIC = "NoCanaryTraffic"
QUERY_FAILED_IGNORED = "QueryFailedIgnored"
# No metric of spec.analysis had enough samples or trials (also the cause of a rollback past the deadline)
NO_METRIC_DATA = "NoMetricData"
PAUSED = "Paused"
RESUMED = "Resumed"
REQUEST_IGNORED = "RequestIgnored"
WAITING_FOR_SLOT = "WaitingForSlot"
ROUTE_ACCEPTED = "RouteAccepted"
BASELINE_STARTED = "BaselineStarted"

# Causes of a rollback (the reason of a status.rollouts record)
CHECKS_FAILED = "ChecksFailed"
CANARY_NOT_READY = "CanaryNotReady"
BASELINE_NOT_READY = "BaselineNotReady"
ANALYSIS_UNAVAILABLE = "AnalysisUnavailable"
ABORTED = "Aborted"
PRIMARY_NOT_READY = "PrimaryNotReady"
ROUTE_NOT_ACCEPTED = "RouteNotAccepted"  # also the Event of a weight waiting for its route's acceptance

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
CONDITION_PAUSED = "Paused"
# kstatus' conditions (sigs.k8s.io/cli-utils), which Flux, Helm and `kubectl wait` read; see conditions.py
CONDITION_RECONCILING = "Reconciling"
CONDITION_STALLED = "Stalled"

# Condition reasons
INITIALIZING = "Initializing"
CANARY_PROGRESSING = "CanaryProgressing"
PROMOTING = "Promoting"
IDLE = "Idle"
STACK_APPLIED = "StackApplied"
APPLYING = "Applying"
NOT_PROMOTED = "NotPromoted"
PAUSED_BY_REQUEST = "PausedByRequest"
NOT_PAUSED = "NotPaused"
# Ready, Reconciling and Stalled share one reason: the standing of the spec's release
ROLLED_OUT = "RolledOut"
ROLLOUT_PENDING = "RolloutPending"
RETRYING = "Retrying"
POLICY_DENIED = "PolicyDenied"
