//! AWS discovery against moto's server: the collector lists EKS clusters and managed node groups (and
//! ECS GPU container instances) and prices a node whose agent reported no instance type.

use gpucost_e2e::{Collector, Moto, free_port};
use gpucost_proto::v1 as pb;

const NS: u64 = 1_000_000_000;

#[test]
fn a_node_without_an_instance_type_is_priced_from_its_eks_node_group() {
    let Some(moto) = Moto::start() else { return };
    moto.boto3(
        r#"
eks = boto3.client('eks', **kw)
ecs = boto3.client('ecs', **kw)
role = 'arn:aws:iam::123456789012:role/eks'
eks.create_cluster(name='gpu-prod', roleArn=role, resourcesVpcConfig={'subnetIds': ['subnet-1']})
eks.create_nodegroup(clusterName='gpu-prod', nodegroupName='a10g-spot', nodeRole=role, subnets=['subnet-1'],
                     instanceTypes=['g5.12xlarge'], capacityType='SPOT', labels={'gpu': 'a10g'})
eks.create_nodegroup(clusterName='gpu-prod', nodegroupName='system', nodeRole=role, subnets=['subnet-1'],
                     instanceTypes=['m6i.xlarge'], capacityType='ON_DEMAND')
eks.create_cluster(name='gpu-dev', roleArn=role, resourcesVpcConfig={'subnetIds': ['subnet-1']})
eks.create_nodegroup(clusterName='gpu-dev', nodegroupName='a10g', nodeRole=role, subnets=['subnet-1'],
                     instanceTypes=['g5.48xlarge'])
ecs.create_cluster(clusterName='batch')
"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let url = moto.url();
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let c = Collector::start_with(
        &dir.path().join("ledger.db"),
        free_port(),
        free_port(),
        &["--aws-discovery", "--aws-endpoint-url", &url],
        &env,
    );

    // A node in gpu-prod with four A10Gs whose agent knew neither its instance type nor its capacity type.
    let t0 = 1_793_577_600 * NS;
    let devices = (0..4)
        .map(|i| pb::GpuDevice {
            uuid: format!("GPU-{i}"),
            model: "NVIDIA A10G".into(),
            memory_total_bytes: 24 << 30,
            index: i,
            ..Default::default()
        })
        .collect();
    let batch = pb::UsageBatch {
        agent_id: "ip-10-1-2-3".into(),
        boot_id: "b".into(),
        seq: 1,
        node: Some(pb::NodeInfo {
            cluster: "gpu-prod".into(),
            node_name: "ip-10-1-2-3".into(),
            region: "us-east-1".into(),
            devices,
            ..Default::default()
        }),
        interval_start_unix_nanos: t0,
        interval_end_unix_nanos: t0 + 3_600 * NS,
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(c.grpc_url()).unwrap().connect().await.unwrap();
        let mut client = pb::ingest_client::IngestClient::new(channel);
        let mut acks = client.report(tokio_stream::iter(vec![batch])).await.unwrap().into_inner();
        assert!(acks.message().await.unwrap().is_some(), "stored");
    });

    let (_, prices) = c.get("/api/v1/prices");
    let node = &prices["nodes"][0];
    assert_eq!(node["instance_type"], "g5.12xlarge", "{prices}");
    assert_eq!(node["capacity_type"], "spot", "{prices}");
    assert!(
        node["source"].as_str().unwrap().starts_with("EKS node group gpu-prod/a10g-spot → AWS catalogue"),
        "{node}"
    );
    // An hour of four GPUs of a g5.12xlarge ($5.672/h in the catalogue; no spot discount configured).
    let (_, costs) = c.get("/api/v1/costs?from=2026-11-02T00:00:00Z&to=2026-11-02T01:00:00Z");
    assert_eq!(costs["fleet"]["micros"].as_u64(), Some(5_672_000), "{costs}");
}
