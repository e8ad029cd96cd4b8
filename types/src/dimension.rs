//! What GPU time and cost can be grouped and filtered by: the API's `group_by` and `filter` vocabulary.

/// Most dimensions that read labels (`label:<key>`, model, model_version, run, experiment) one query may group or
/// filter by: each is a join, and SQLite joins at most 64 tables.
pub const MAX_LABEL_DIMENSIONS: usize = 16;
/// Most filter terms one query may have.
pub const MAX_FILTER_TERMS: usize = 32;

/// What usage can be grouped by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dimension {
    Cluster,
    Node,
    Gpu,
    Workload,
    /// The kind of workload: kubernetes_pod, ecs_task, slurm_job, …
    Kind,
    Namespace,
    Pod,
    /// `<kind>/<name>` of the pod's owning controller (a Deployment, Job, StatefulSet, …).
    Controller,
    Container,
    EcsTask,
    SlurmJob,
    User,
    /// The owner in force when the GPU time was used (`group:default/vision`, `user:default/alice`), and its
    /// team, department, component and system; `unattributed` in each when no owner rule named one.
    Owner,
    Team,
    Department,
    Component,
    System,
    /// The MLflow model and version (pod labels/annotations `mlflow.org/model-name`, `…/model-version`), run
    /// (`mlflow.org/run-id`, else the process's `MLFLOW_RUN_ID`) and experiment (`MLFLOW_EXPERIMENT_ID`).
    Model,
    ModelVersion,
    Run,
    Experiment,
    /// The UTC day (`YYYY-MM-DD`), for daily series.
    Day,
    /// The value of one allow-listed pod label or annotation (`label:<key>`).
    Label(String),
}

impl Dimension {
    /// Every dimension but `label:<key>`.
    pub const FIXED: [Dimension; 22] = [
        Dimension::Cluster,
        Dimension::Node,
        Dimension::Gpu,
        Dimension::Workload,
        Dimension::Kind,
        Dimension::Namespace,
        Dimension::Pod,
        Dimension::Controller,
        Dimension::Container,
        Dimension::EcsTask,
        Dimension::SlurmJob,
        Dimension::User,
        Dimension::Owner,
        Dimension::Team,
        Dimension::Department,
        Dimension::Component,
        Dimension::System,
        Dimension::Model,
        Dimension::ModelVersion,
        Dimension::Run,
        Dimension::Experiment,
        Dimension::Day,
    ];

    pub fn name(&self) -> String {
        match self {
            Self::Cluster => "cluster".into(),
            Self::Node => "node".into(),
            Self::Gpu => "gpu".into(),
            Self::Workload => "workload".into(),
            Self::Kind => "kind".into(),
            Self::Namespace => "namespace".into(),
            Self::Pod => "pod".into(),
            Self::Controller => "controller".into(),
            Self::Container => "container".into(),
            Self::EcsTask => "ecs_task".into(),
            Self::SlurmJob => "slurm_job".into(),
            Self::User => "user".into(),
            Self::Owner => "owner".into(),
            Self::Team => "team".into(),
            Self::Department => "department".into(),
            Self::Component => "component".into(),
            Self::System => "system".into(),
            Self::Model => "model".into(),
            Self::ModelVersion => "model_version".into(),
            Self::Run => "run".into(),
            Self::Experiment => "experiment".into(),
            Self::Day => "day".into(),
            Self::Label(key) => format!("label:{key}"),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        if let Some(key) = s.strip_prefix("label:") {
            return (!key.is_empty()).then(|| Self::Label(key.to_string()));
        }
        Self::FIXED.into_iter().find(|d| d.name() == s)
    }

    /// Whether this reads a workload's labels (a join per label in a query).
    pub fn reads_labels(&self) -> bool {
        matches!(self, Self::Label(_) | Self::Model | Self::ModelVersion | Self::Run | Self::Experiment)
    }

    /// Whether this says who pays (owner, team, department, component, system: the owner row's column of that
    /// name); its value is `unattributed` for GPU time no owner rule named.
    pub fn names_owner(&self) -> bool {
        matches!(self, Self::Owner | Self::Team | Self::Department | Self::Component | Self::System)
    }

    /// Whether grouping by this needs the per-workload rollup.
    pub fn is_per_workload(&self) -> bool {
        !matches!(self, Self::Cluster | Self::Node | Self::Gpu | Self::Day)
    }

    /// A stored group value as the API shows it (a day's index as `YYYY-MM-DD`).
    pub fn display(&self, value: &str) -> String {
        match (self, value.parse::<u64>()) {
            (Self::Day, Ok(day)) => {
                humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(day * 86_400))
                    .to_string()[..10]
                    .to_string()
            }
            _ => value.to_string(),
        }
    }
}
