//! Discovery through the AWS APIs: EKS clusters and managed node groups, ECS clusters, GPU container
//! instances and their tasks (with tags). Credentials and region come from the standard AWS chain;
//! `endpoint_url` points it at an emulator (moto) in tests. Every list is paginated and every call is
//! bounded by a timeout. Each call's error names its IAM action; the IAM policy in
//! `terraform/modules/discovery-policy` grants exactly these actions (`tests/tests/iam.rs` proves it against moto).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ecs::error::SdkError;
use aws_sdk_ecs::types::{ContainerInstance, Task, TaskField};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use gpucost_rules::inventory::{EcsInstance, EcsTask, Inventory, NodeGroup};

#[derive(Debug, thiserror::Error)]
#[error("AWS discovery: {call}: {reason}")]
pub struct DiscoveryError {
    pub call: &'static str,
    pub reason: String,
}

/// `call` is the IAM action of the SDK call that failed. A 403 says so plainly, whatever the body (AWS answers
/// JSON services with a JSON `AccessDeniedException`; moto answers them with an XML body the SDK cannot parse).
fn err<E: std::error::Error + 'static>(call: &'static str) -> impl FnOnce(SdkError<E>) -> DiscoveryError {
    move |e| {
        // The SDK's errors print their cause only in the chain.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason.push_str(&format!(": {s}"));
            source = s.source();
        }
        if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) {
            reason = format!(
                "access denied (HTTP 403): the collector's AWS identity may not call {call}; grant it \
                 (terraform/modules/discovery-policy grants every action discovery makes): {reason}"
            );
        }
        DiscoveryError { call, reason }
    }
}

pub struct AwsDiscovery {
    eks: aws_sdk_eks::Client,
    ecs: aws_sdk_ecs::Client,
}

/// The AWS SDK's configuration for the collector's clients (discovery, the bill's S3): the standard credential
/// chain (env, profile, web identity, ECS/EC2 roles), rustls with ring, these timeouts, and `endpoint_url` in place
/// of AWS's endpoints when given (an emulator such as moto, in tests).
pub async fn sdk_config(
    endpoint_url: Option<&str>,
    timeouts: aws_config::timeout::TimeoutConfig,
) -> aws_config::SdkConfig {
    let http =
        aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http).timeout_config(timeouts);
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

impl AwsDiscovery {
    /// Clients from the standard AWS chain (env, profile, web identity, ECS/EC2 roles).
    pub async fn new(endpoint_url: Option<&str>) -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(Duration::from_secs(20))
            .operation_attempt_timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build();
        let config = sdk_config(endpoint_url, timeouts).await;
        Self { eks: aws_sdk_eks::Client::new(&config), ecs: aws_sdk_ecs::Client::new(&config) }
    }

    /// One discovery pass. `catalogue_gpus` gives the GPUs of a known GPU instance type: an ECS
    /// container instance is a GPU instance if it registered GPUs, or if its type is a GPU type.
    pub async fn inventory(
        &self,
        catalogue_gpus: &(dyn Fn(&str) -> Option<u32> + Sync),
    ) -> Result<Inventory, DiscoveryError> {
        let mut inv = Inventory::default();
        self.eks_node_groups(&mut inv).await?;
        self.ecs_gpu_instances(&mut inv, catalogue_gpus).await?;
        Ok(inv)
    }

    async fn eks_node_groups(&self, inv: &mut Inventory) -> Result<(), DiscoveryError> {
        let mut clusters = Vec::new();
        let mut token = None;
        loop {
            let out = self.eks.list_clusters().set_next_token(token).send().await.map_err(err("eks:ListClusters"))?;
            clusters.extend(out.clusters().iter().cloned());
            token = out.next_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        for cluster in clusters {
            let mut names = Vec::new();
            let mut token = None;
            loop {
                let out = self
                    .eks
                    .list_nodegroups()
                    .cluster_name(&cluster)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(err("eks:ListNodegroups"))?;
                names.extend(out.nodegroups().iter().cloned());
                token = out.next_token().map(String::from);
                if token.is_none() {
                    break;
                }
            }
            for name in names {
                let out = self
                    .eks
                    .describe_nodegroup()
                    .cluster_name(&cluster)
                    .nodegroup_name(&name)
                    .send()
                    .await
                    .map_err(err("eks:DescribeNodegroup"))?;
                let Some(g) = out.nodegroup() else { continue };
                let capacity = match g.capacity_type().map(|c| c.as_str()) {
                    Some("SPOT") => "spot",
                    Some("ON_DEMAND") => "on_demand",
                    _ => "unspecified",
                };
                inv.node_groups.push(NodeGroup {
                    cluster: cluster.clone(),
                    name: name.clone(),
                    instance_types: g.instance_types().to_vec(),
                    capacity_type: capacity.into(),
                    labels: g
                        .labels()
                        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    /// The GPU container instances of every ECS cluster, and the tasks placed on them (with their tags).
    async fn ecs_gpu_instances(
        &self,
        inv: &mut Inventory,
        catalogue_gpus: &(dyn Fn(&str) -> Option<u32> + Sync),
    ) -> Result<(), DiscoveryError> {
        for cluster in self.ecs_clusters().await? {
            let arns = self.ecs_container_instance_arns(&cluster).await?;
            let gpu_instances = self.ecs_describe_gpu_instances(&cluster, &arns, inv, catalogue_gpus).await?;
            let task_arns = self.ecs_task_arns(&cluster).await?;
            self.ecs_describe_gpu_tasks(&cluster, &task_arns, &gpu_instances, inv).await?;
        }
        Ok(())
    }

    /// Every ECS cluster's ARN.
    async fn ecs_clusters(&self) -> Result<Vec<String>, DiscoveryError> {
        let mut clusters = Vec::new();
        let mut token = None;
        loop {
            let out = self.ecs.list_clusters().set_next_token(token).send().await.map_err(err("ecs:ListClusters"))?;
            clusters.extend(out.cluster_arns().iter().cloned());
            token = out.next_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        Ok(clusters)
    }

    /// The ARNs of `cluster`'s container instances.
    async fn ecs_container_instance_arns(&self, cluster: &str) -> Result<Vec<String>, DiscoveryError> {
        let mut arns = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .ecs
                .list_container_instances()
                .cluster(cluster)
                .set_next_token(token)
                .send()
                .await
                .map_err(err("ecs:ListContainerInstances"))?;
            arns.extend(out.container_instance_arns().iter().cloned());
            token = out.next_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        Ok(arns)
    }

    /// Describes `arns` (a hundred a call) and adds the GPU instances among them to `inv`; their ARNs.
    async fn ecs_describe_gpu_instances(
        &self,
        cluster: &str,
        arns: &[String],
        inv: &mut Inventory,
        catalogue_gpus: &(dyn Fn(&str) -> Option<u32> + Sync),
    ) -> Result<Vec<String>, DiscoveryError> {
        let mut gpu_instances = Vec::new();
        for chunk in arns.chunks(100) {
            let out = self
                .ecs
                .describe_container_instances()
                .cluster(cluster)
                .set_container_instances(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(err("ecs:DescribeContainerInstances"))?;
            for ci in out.container_instances() {
                if let Some(instance) = gpu_instance(cluster, ci, catalogue_gpus) {
                    gpu_instances.push(ci.container_instance_arn().unwrap_or_default().to_string());
                    inv.ecs_instances.push(instance);
                }
            }
        }
        Ok(gpu_instances)
    }

    /// The ARNs of `cluster`'s tasks.
    async fn ecs_task_arns(&self, cluster: &str) -> Result<Vec<String>, DiscoveryError> {
        let mut task_arns = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .ecs
                .list_tasks()
                .cluster(cluster)
                .set_next_token(token)
                .send()
                .await
                .map_err(err("ecs:ListTasks"))?;
            task_arns.extend(out.task_arns().iter().cloned());
            token = out.next_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        Ok(task_arns)
    }

    /// Describes `task_arns` (a hundred a call, with their tags) and adds those on `gpu_instances` to `inv`.
    async fn ecs_describe_gpu_tasks(
        &self,
        cluster: &str,
        task_arns: &[String],
        gpu_instances: &[String],
        inv: &mut Inventory,
    ) -> Result<(), DiscoveryError> {
        for chunk in task_arns.chunks(100) {
            let out = self
                .ecs
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(chunk.to_vec()))
                .include(TaskField::Tags)
                .send()
                .await
                .map_err(err("ecs:DescribeTasks"))?;
            for t in out.tasks() {
                let on_gpu = t.container_instance_arn().is_some_and(|ci| gpu_instances.iter().any(|g| g == ci));
                if on_gpu {
                    inv.ecs_tasks.push(ecs_task(cluster, t));
                }
            }
        }
        Ok(())
    }
}

/// `ci` as a GPU instance of `cluster`, if it is one: it registered GPUs, or its type is a GPU type.
fn gpu_instance(
    cluster: &str,
    ci: &ContainerInstance,
    catalogue_gpus: &(dyn Fn(&str) -> Option<u32> + Sync),
) -> Option<EcsInstance> {
    let gpus = ci
        .registered_resources()
        .iter()
        .find(|r| r.name() == Some("GPU"))
        .map_or(0, |r| r.string_set_value().len() as u32);
    let instance_type = ci
        .attributes()
        .iter()
        .find(|a| a.name() == "ecs.instance-type")
        .and_then(|a| a.value())
        .unwrap_or_default()
        .to_string();
    let gpus = if gpus > 0 { gpus } else { catalogue_gpus(&instance_type).unwrap_or(0) };
    (gpus > 0).then(|| EcsInstance {
        cluster: cluster.to_string(),
        ec2_instance_id: ci.ec2_instance_id().unwrap_or_default().to_string(),
        instance_type,
        gpus,
    })
}

/// Task `t` of `cluster`: its ARN, its task definition's family and its tags.
fn ecs_task(cluster: &str, t: &Task) -> EcsTask {
    let family = t
        .task_definition_arn()
        .and_then(|a| a.rsplit('/').next())
        .and_then(|fv| fv.split(':').next())
        .unwrap_or_default()
        .to_string();
    EcsTask {
        cluster: cluster.to_string(),
        task_arn: t.task_arn().unwrap_or_default().to_string(),
        family,
        tags: t
            .tags()
            .iter()
            .filter_map(|tag| Some((tag.key()?.to_string(), tag.value().unwrap_or_default().to_string())))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// RDS IAM tokens' credentials (`gpucost_ledger::sql::rds_iam`): the standard AWS chain (environment, profile,
/// web identity, the ECS task role, the instance profile), kept until five minutes before they expire (15
/// minutes when they do not say). Set once at start, before a ledger is opened.
pub fn use_aws_credential_chain() {
    use gpucost_ledger::sql::rds_iam::{Credentials, set_credential_source};
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime};
    static KEPT: Mutex<Option<(Credentials, SystemTime)>> = Mutex::new(None);
    set_credential_source(Box::new(|| {
        let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((c, until)) = kept.as_ref()
            && SystemTime::now() < *until
        {
            return Ok(c.clone());
        }
        let (c, expiry) = from_chain()?;
        let until =
            expiry.map_or_else(|| SystemTime::now() + Duration::from_secs(900), |e| e - Duration::from_secs(300));
        *kept = Some((c.clone(), until));
        Ok(c)
    }));
}

/// Credentials and when they expire, from the AWS SDK's default chain.
fn from_chain() -> Result<(gpucost_ledger::sql::rds_iam::Credentials, Option<std::time::SystemTime>), String> {
    // The chain is async; resolve it on a thread of its own (this may be called from inside a runtime).
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime for the AWS credential chain: {e}"))?;
        rt.block_on(async {
            use aws_sdk_eks::config::ProvideCredentials;
            use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
            // The HTTP client the container and web-identity providers call (the SDK is built without one).
            let http = aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                .build_https();
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http).load().await;
            let provider = config.credentials_provider().ok_or("no AWS credential provider is configured")?;
            let c = tokio::time::timeout(std::time::Duration::from_secs(20), provider.provide_credentials())
                .await
                .map_err(|_| "the AWS credential chain did not answer within 20 s".to_string())?
                .map_err(|e| format!("no AWS credentials: {}", chain(&e)))?;
            Ok((
                gpucost_ledger::sql::rds_iam::Credentials {
                    access_key_id: c.access_key_id().to_string(),
                    secret_access_key: c.secret_access_key().to_string(),
                    session_token: c.session_token().map(str::to_string),
                },
                c.expiry(),
            ))
        })
    })
    .join()
    .map_err(|_| "the AWS credential chain panicked".to_string())?
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(&format!(": {c}"));
        source = c.source();
    }
    s
}
