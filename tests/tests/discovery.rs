//! AWS discovery against moto's server: the collector lists EKS clusters and managed node groups (and
//! ECS GPU container instances) and prices a node whose agent reported no instance type.

use gpucost_e2e::{Collector, Moto, free_port, send_batches};
use gpucost_proto::v1 as pb;

const NS: u64 = 1_000_000_000;

#[test]
fn a_node_without_an_instance_type_is_priced_from_its_eks_node_group() {
    let Some(moto) = Moto::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let iid_file = dir.path().join("ecs-instance-id");
    moto.boto3_with_out(&iid_file,
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
ec2 = boto3.client('ec2', **kw)
iid = ec2.run_instances(ImageId='ami-12c6146b', MinCount=1, MaxCount=1, InstanceType='g6.xlarge')['Instances'][0]['InstanceId']
ecs.register_container_instance(cluster='batch', instanceIdentityDocument=json.dumps({'instanceId': iid}),
    totalResources=[{'name': 'GPU', 'type': 'STRINGSET', 'stringSetValue': ['GPU-l4']}],
    attributes=[{'name': 'ecs.instance-type', 'value': 'g6.xlarge'}])
ecs.register_task_definition(family='vision-embed', containerDefinitions=[{'name': 'main', 'image': 'embed:1', 'memory': 512,
    'resourceRequirements': [{'type': 'GPU', 'value': '1'}]}])
ecs.run_task(cluster='batch', taskDefinition='vision-embed', tags=[{'key': 'backstage.io/owner', 'value': 'group:default/vision'}])
open(OUT, 'w').write(iid)
"#,
    );
    let ecs_instance = std::fs::read_to_string(&iid_file).unwrap();
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
    assert_eq!(send_batches(&c.grpc_url(), vec![batch]).len(), 1, "stored");

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

    // ECS: the GPU container instance and its task, with the task's tags.
    let (status, inv) = c.get("/api/v1/inventory");
    assert_eq!(status, 200);
    assert_eq!(inv["node_groups"].as_array().unwrap().len(), 3, "{inv}");
    let ci = &inv["ecs_instances"][0];
    assert_eq!(
        (ci["ec2_instance_id"].as_str(), ci["instance_type"].as_str()),
        (Some(ecs_instance.as_str()), Some("g6.xlarge")),
        "{inv}"
    );
    let task = &inv["ecs_tasks"][0];
    assert_eq!(task["family"], "vision-embed", "{inv}");
    assert_eq!(task["tags"]["backstage.io/owner"], "group:default/vision", "{inv}");
    // A node named after that EC2 instance, whose agent sent no instance type, is priced as a g6.xlarge.
    let devices = vec![pb::GpuDevice {
        uuid: "GPU-l4".into(),
        model: "NVIDIA L4".into(),
        memory_total_bytes: 24 << 30,
        ..Default::default()
    }];
    let batch = pb::UsageBatch {
        agent_id: ecs_instance.clone(),
        boot_id: "b".into(),
        seq: 1,
        node: Some(pb::NodeInfo {
            cluster: "batch".into(),
            node_name: ecs_instance.clone(),
            region: "us-east-1".into(),
            devices,
            ..Default::default()
        }),
        interval_start_unix_nanos: t0,
        interval_end_unix_nanos: t0 + 3_600 * NS,
        ..Default::default()
    };
    assert_eq!(send_batches(&c.grpc_url(), vec![batch]).len(), 1, "stored");
    let (_, prices) = c.get("/api/v1/prices");
    let node = prices["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == ecs_instance.as_str())
        .expect("priced")
        .clone();
    assert_eq!(node["instance_type"], "g6.xlarge", "{node}");
    assert!(node["source"].as_str().unwrap().starts_with("ECS container instance"), "{node}");
}
