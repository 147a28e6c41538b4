"""A compliant plan, in the offline format (type, name, urn, inputs), that every policy accepts.

Tests copy it, change one property and assert the exact violation. It also shows the infra what the
policies expect: explicit physical names, relations by name, tags project/environment/owner.
"""

from __future__ import annotations

import copy
import json
from typing import Any

ACCOUNT = "111122223333"
KEY_ARN = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/0d7e1c3a-1111-2222-3333-444455556666"
TOPIC_ARN = f"arn:aws:sns:eu-west-1:{ACCOUNT}:mlops-stack-prod-alerts"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/mlops-stack-prod-sagemaker"
OIDC_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.com"
ARTIFACTS = "mlops-stack-prod-artifacts"
LOGS = "mlops-stack-prod-access-logs"
REPO = "mlops-stack-prod"
ENDPOINT = "mlops-stack-prod-endpoint"
ENDPOINT_CONFIG = "mlops-stack-prod-config-3f2a1b"
VARIANT = "AllTraffic"
RESOURCE_ID = f"endpoint/{ENDPOINT}/variant/{VARIANT}"
TAGS = {"project": "mlops-stack", "environment": "prod", "owner": "platform-team"}
VPC_CIDR = "10.40.0.0/16"
SUBNETS = ["subnet-0a1b2c3d4e5f60718", "subnet-1a1b2c3d4e5f60718"]
GROUPS = ["sg-0a1b2c3d4e5f60718"]
JOB_VPC = {"SecurityGroupIds": GROUPS, "Subnets": SUBNETS}


def tls_policy(bucket: str, *extra: dict[str, Any]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
                *extra,
            ],
        }
    )


def bucket_resources(key: str, bucket: str, *, sse: dict[str, Any], logging_to: str | None) -> list[dict]:
    out = [
        {"type": "aws:s3/bucket:Bucket", "name": key, "inputs": {"bucket": bucket, "tags": {**TAGS, "purpose": key}}},
        {
            "type": "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "name": f"{key}-sse",
            "inputs": {"bucket": bucket, "rules": [sse]},
        },
        {
            "type": "aws:s3/bucketVersioning:BucketVersioning",
            "name": f"{key}-versioning",
            "inputs": {"bucket": bucket, "versioningConfiguration": {"status": "Enabled"}},
        },
        {
            "type": "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "name": f"{key}-pab",
            "inputs": {
                "bucket": bucket,
                "blockPublicAcls": True,
                "blockPublicPolicy": True,
                "ignorePublicAcls": True,
                "restrictPublicBuckets": True,
            },
        },
        {
            "type": "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
            "name": f"{key}-ownership",
            "inputs": {"bucket": bucket, "rule": {"objectOwnership": "BucketOwnerEnforced"}},
        },
        {
            "type": "aws:s3/bucketPolicy:BucketPolicy",
            "name": f"{key}-policy",
            "inputs": {"bucket": bucket, "policy": tls_policy(bucket)},
        },
        {
            "type": "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
            "name": f"{key}-lifecycle",
            "inputs": {"bucket": bucket, "rules": [{"id": "expire-noncurrent", "status": "Enabled"}]},
        },
    ]
    if logging_to:
        out.append(
            {
                "type": "aws:s3/bucketLogging:BucketLogging",
                "name": f"{key}-logging",
                "inputs": {"bucket": bucket, "targetBucket": logging_to, "targetPrefix": f"{bucket}/"},
            }
        )
    return out


def pipeline_definition() -> str:
    processing = {
        "Name": "preprocess",
        "Type": "Processing",
        "Arguments": {
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                    "VolumeSizeInGB": 30,
                    "VolumeKmsKeyId": KEY_ARN,
                }
            },
            "ProcessingOutputConfig": {"Outputs": [], "KmsKeyId": KEY_ARN},
            "NetworkConfig": {"EnableInterContainerTrafficEncryption": True, "EnableNetworkIsolation": True,
                              "VpcConfig": JOB_VPC},
            "RoleArn": ROLE_ARN,
        },
    }
    training = {
        "Name": "train",
        "Type": "Training",
        "Arguments": {
            "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeKmsKeyId": KEY_ARN},
            "OutputDataConfig": {"S3OutputPath": f"s3://{ARTIFACTS}/models", "KmsKeyId": KEY_ARN},
            "EnableInterContainerTrafficEncryption": True,
            "VpcConfig": JOB_VPC,
            "RoleArn": ROLE_ARN,
        },
    }
    evaluate = copy.deepcopy(processing) | {"Name": "evaluate"}
    condition = {
        "Name": "check-metric",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [],
            "IfSteps": [evaluate, {"Name": "register", "Type": "RegisterModel", "Arguments": {}}],
            "ElseSteps": [{"Name": "fail", "Type": "Fail", "Arguments": {"ErrorMessage": "metric too low"}}],
        },
    }
    return json.dumps({"Version": "2020-12-01", "Parameters": [], "Steps": [processing, training, condition]})


def alarm(key: str, metric: str) -> dict:
    return {
        "type": "aws:cloudwatch/metricAlarm:MetricAlarm",
        "name": key,
        "inputs": {
            "name": f"{ENDPOINT}-{key}",
            "namespace": "AWS/SageMaker",
            "metricName": metric,
            "dimensions": {"EndpointName": ENDPOINT, "VariantName": VARIANT},
            "statistic": "Sum",
            "period": 60,
            "evaluationPeriods": 5,
            "datapointsToAlarm": 3,
            "threshold": 1,
            "comparisonOperator": "GreaterThanThreshold",
            "alarmActions": [TOPIC_ARN],
            "tags": dict(TAGS),
        },
    }


def _resources() -> list[dict]:
    key_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdmin",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    trust_ci = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "GitLabOidc",
                "Effect": "Allow",
                "Principal": {"Federated": OIDC_ARN},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        "gitlab.com:aud": "sts.amazonaws.com",
                        "gitlab.com:sub": "project_path:acme/mlops-stack:ref_type:branch:ref:main",
                    }
                },
            }
        ],
    }
    trust_sagemaker = {
        "Version": "2012-10-17",
        "Statement": {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
        },
    }
    permissions = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Artifacts",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{ARTIFACTS}", f"arn:aws:s3:::{ARTIFACTS}/*"],
            },
            {"Sid": "Key", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": KEY_ARN},
        ],
    }
    monitoring_job = {
        "monitoringAppSpecification": {"imageUri": f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/{REPO}:abc123"},
        "monitoringResources": {
            "clusterConfig": {
                "instanceCount": 1,
                "instanceType": "ml.m5.large",
                "volumeSizeInGb": 20,
                "volumeKmsKeyId": KEY_ARN,
            }
        },
        "monitoringOutputConfig": {"kmsKeyId": KEY_ARN, "monitoringOutputs": []},
        "networkConfig": {"enableInterContainerTrafficEncryption": True},
        "roleArn": ROLE_ARN,
    }
    return [
        {
            "type": "aws:kms/key:Key",
            "name": "platform-key",
            "protect": True,  # prod's: network-vpc-when-protected applies
            "inputs": {
                "enableKeyRotation": True,
                "deletionWindowInDays": 30,
                "policy": json.dumps(key_policy),
                "tags": dict(TAGS),
            },
        },
        {
            "type": "aws:ec2/securityGroup:SecurityGroup",
            "name": "workload",
            "inputs": {"name": "mlops-stack-prod-workload", "vpcId": "vpc-0a1b2c3d4e5f60718", "tags": dict(TAGS),
                       "ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}],
                       "egress": [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": [VPC_CIDR]}]},
        },
        {
            "type": "aws:kms/alias:Alias",
            "name": "platform-key-alias",
            "inputs": {"name": "alias/mlops-stack-prod", "targetKeyId": KEY_ARN},
        },
        *bucket_resources(
            "artifacts",
            ARTIFACTS,
            sse={
                "applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY_ARN},
                "bucketKeyEnabled": True,
            },
            logging_to=LOGS,
        ),
        {
            "type": "aws:cloudtrail/trail:Trail",
            "name": "trail",
            "inputs": {
                "name": "mlops-stack-prod-audit", "s3BucketName": LOGS, "s3KeyPrefix": "cloudtrail",
                "kmsKeyId": KEY_ARN, "enableLogFileValidation": True, "isMultiRegionTrail": True,
                "includeGlobalServiceEvents": True, "tags": dict(TAGS),
                "eventSelectors": [{"readWriteType": "All", "includeManagementEvents": True, "dataResources": [
                    {"type": "AWS::S3::Object", "values": [f"arn:aws:s3:::{ARTIFACTS}/"]}]}],
            },
        },
        {
            "type": "aws:cloudwatch/logGroup:LogGroup",
            "name": "endpoint-logs",
            "inputs": {"name": f"/aws/sagemaker/Endpoints/{ENDPOINT}", "retentionInDays": 90, "kmsKeyId": KEY_ARN,
                       "tags": dict(TAGS)},
        },
        *bucket_resources(
            "access-logs",
            LOGS,
            sse={"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}},
            logging_to=None,
        ),
        {
            "type": "aws:ecr/repository:Repository",
            "name": "images",
            "inputs": {
                "name": REPO,
                "imageTagMutability": "IMMUTABLE",
                "imageScanningConfiguration": {"scanOnPush": True},
                "encryptionConfigurations": [{"encryptionType": "KMS", "kmsKey": KEY_ARN}],
                "tags": dict(TAGS),
            },
        },
        {
            "type": "aws:ecr/lifecyclePolicy:LifecyclePolicy",
            "name": "images-lifecycle",
            "inputs": {"repository": REPO, "policy": json.dumps({"rules": [{"rulePriority": 1}]})},
        },
        {
            "type": "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
            "name": "gitlab-oidc",
            "inputs": {"url": "https://gitlab.com", "clientIdLists": ["sts.amazonaws.com"], "tags": dict(TAGS)},
        },
        {
            "type": "aws:iam/role:Role",
            "name": "ci-role",
            "inputs": {"assumeRolePolicy": json.dumps(trust_ci), "tags": dict(TAGS)},
        },
        {
            "type": "aws:iam/rolePolicy:RolePolicy",
            "name": "ci-role-policy",
            "inputs": {"role": "mlops-stack-prod-ci", "policy": json.dumps(permissions)},
        },
        {
            "type": "aws:iam/role:Role",
            "name": "sagemaker-role",
            "inputs": {"assumeRolePolicy": trust_sagemaker, "tags": dict(TAGS),
                       "permissionsBoundary": f"arn:aws:iam::{ACCOUNT}:policy/mlops-stack-prod-workload-boundary"},
        },
        {
            "type": "aws:iam/policy:Policy",
            "name": "sagemaker-policy",
            "inputs": {"policy": json.dumps(permissions), "tags": dict(TAGS)},
        },
        {
            "type": "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
            "name": "sagemaker-policy-attachment",
            "inputs": {"role": "mlops-stack-prod-sagemaker", "policyArn": f"arn:aws:iam::{ACCOUNT}:policy/sagemaker"},
        },
        {
            "type": "aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer",
            "name": "mlflow",
            "inputs": {
                "trackingServerName": "mlops-stack-prod",
                "artifactStoreUri": f"s3://{ARTIFACTS}/mlflow",
                "roleArn": ROLE_ARN,
                "tags": dict(TAGS),
            },
        },
        {
            "type": "aws:sagemaker/modelPackageGroup:ModelPackageGroup",
            "name": "model-group",
            "inputs": {"modelPackageGroupName": "mlops-stack-prod", "tags": dict(TAGS)},
        },
        {
            "type": "aws:sagemaker/pipeline:Pipeline",
            "name": "pipeline",
            "inputs": {
                "pipelineName": "mlops-stack-prod",
                "pipelineDisplayName": "mlops-stack-prod",
                "roleArn": ROLE_ARN,
                "pipelineDefinition": pipeline_definition(),
                "tags": dict(TAGS),
            },
        },
        {
            "type": "aws:sagemaker/model:Model",
            "name": "model",
            "inputs": {"executionRoleArn": ROLE_ARN, "primaryContainer": {"image": "x"}, "tags": dict(TAGS),
                       "enableNetworkIsolation": True, "vpcConfig": {"subnets": SUBNETS, "securityGroupIds": GROUPS}},
        },
        {
            "type": "aws:sagemaker/endpointConfiguration:EndpointConfiguration",
            "name": "endpoint-config",
            "inputs": {
                "name": ENDPOINT_CONFIG,
                "kmsKeyArn": KEY_ARN,
                "productionVariants": [
                    {
                        "variantName": VARIANT,
                        "modelName": "mlops-stack-prod-model",
                        "instanceType": "ml.m5.large",
                        "initialInstanceCount": 1,
                    }
                ],
                "dataCaptureConfig": {
                    "enableCapture": True,
                    "initialSamplingPercentage": 100,
                    "destinationS3Uri": f"s3://{ARTIFACTS}/capture",
                    "kmsKeyId": KEY_ARN,
                    "captureOptions": [{"captureMode": "Input"}, {"captureMode": "Output"}],
                },
                "asyncInferenceConfig": {"outputConfig": {
                    "s3OutputPath": "s3://data/async/output/", "kmsKeyId": KEY_ARN,
                    "notificationConfig": {"successTopic": f"{TOPIC_ARN}-async-success",
                                           "errorTopic": f"{TOPIC_ARN}-async-errors"}}},
                "tags": dict(TAGS),
            },
        },
        {
            "type": "aws:sagemaker/endpoint:Endpoint",
            "name": "endpoint",
            "inputs": {
                "name": ENDPOINT,
                "endpointConfigName": ENDPOINT_CONFIG,
                "deploymentConfig": {
                    "blueGreenUpdatePolicy": {
                        "trafficRoutingConfiguration": {"type": "CANARY", "waitIntervalInSeconds": 300},
                    },
                    "autoRollbackConfiguration": {"alarms": [{"alarmName": f"{ENDPOINT}-errors-5xx"}]},
                },
                "tags": dict(TAGS),
            },
        },
        {
            "type": "aws:appautoscaling/target:Target",
            "name": "endpoint-scaling-target",
            "inputs": {
                "serviceNamespace": "sagemaker",
                "resourceId": RESOURCE_ID,
                "scalableDimension": "sagemaker:variant:DesiredInstanceCount",
                "minCapacity": 1,
                "maxCapacity": 4,
                "tags": dict(TAGS),
            },
        },
        {
            "type": "aws:appautoscaling/policy:Policy",
            "name": "endpoint-scaling-policy",
            "inputs": {
                "serviceNamespace": "sagemaker",
                "resourceId": RESOURCE_ID,
                "scalableDimension": "sagemaker:variant:DesiredInstanceCount",
                "policyType": "TargetTrackingScaling",
                "targetTrackingScalingPolicyConfiguration": {
                    "targetValue": 70,
                    "predefinedMetricSpecification": {"predefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                },
            },
        },
        alarm("latency", "ModelLatency"),
        alarm("errors-5xx", "Invocation5XXErrors"),
        alarm("errors-4xx", "Invocation4XXErrors"),
        {
            "type": "aws:sns/topic:Topic",
            "name": "alerts",
            "inputs": {"name": "mlops-stack-prod-alerts", "kmsMasterKeyId": KEY_ARN, "tags": dict(TAGS)},
        },
        {
            "type": "aws:cloudwatch/dashboard:Dashboard",
            "name": "dashboard",
            "inputs": {"dashboardName": "mlops-stack-prod", "dashboardBody": "{}"},
        },
        {
            "type": "aws:cloudwatch/eventRule:EventRule",
            "name": "package-approved",
            "inputs": {"eventPattern": json.dumps({"source": ["aws.sagemaker"]}), "tags": dict(TAGS)},
        },
        {
            "type": "aws:cloudwatch/eventTarget:EventTarget",
            "name": "package-approved-target",
            "inputs": {"rule": "mlops-stack-prod-approved", "arn": "arn:aws:sagemaker:...", "roleArn": ROLE_ARN},
        },
        {
            "type": "aws:scheduler/schedule:Schedule",
            "name": "drift-schedule",
            "inputs": {
                "scheduleExpression": "rate(1 day)",
                "flexibleTimeWindow": {"mode": "OFF"},
                "target": {
                    "arn": "arn:aws:scheduler:::aws-sdk:sagemaker:createProcessingJob",
                    "roleArn": ROLE_ARN,
                    "input": json.dumps({"AppSpecification": {
                        "ImageUri": f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/{REPO}:abc",
                        "ContainerEntrypoint": ["python", "-m", "model_code", "drift"],
                        "ContainerArguments": ["--endpoint", ENDPOINT, "--output", "/opt/ml/processing/output"]},
                        "NetworkConfig": {"EnableInterContainerTrafficEncryption": True, "VpcConfig": JOB_VPC}}),
                },
            },
        },
        {
            "type": "aws:scheduler/schedule:Schedule",
            "name": "batch-schedule",
            "inputs": {
                "scheduleExpression": "cron(0 2 * * ? *)",
                "flexibleTimeWindow": {"mode": "OFF"},
                "kmsKeyArn": KEY_ARN,
                "target": {
                    "arn": "arn:aws:scheduler:::aws-sdk:sagemaker:createTransformJob",
                    "roleArn": ROLE_ARN,
                    "input": json.dumps({
                        "ModelName": "mlops-stack-prod-0123abcd",
                        "TransformOutput": {"S3OutputPath": "s3://data/batch/output/", "KmsKeyId": KEY_ARN},
                        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                                               "VolumeKmsKeyId": KEY_ARN},
                        "DataCaptureConfig": {"DestinationS3Uri": "s3://capture/batch-datacapture/x",
                                              "KmsKeyId": KEY_ARN}}),
                },
            },
        },
        {
            "type": "aws:cloudwatch/metricAlarm:MetricAlarm",
            "name": "drift-alarm",
            "inputs": {
                "name": "mlops-stack-prod-drift",
                "namespace": "mlops-stack/prod",
                "metricName": "DriftDetected",
                "dimensions": {"Endpoint": ENDPOINT},
                "statistic": "Maximum",
                "period": 3600,
                "evaluationPeriods": 3,
                "datapointsToAlarm": 2,
                "threshold": 1,
                "comparisonOperator": "GreaterThanOrEqualToThreshold",
                "alarmActions": [TOPIC_ARN],
                "tags": dict(TAGS),
            },
        },
        {
            "type": "aws:cloudwatch/eventBus:EventBus",
            "name": "retrain-bus",
            "inputs": {"name": "mlops-stack-prod-retrain-from-444455556666", "kmsKeyIdentifier": KEY_ARN,
                       "tags": dict(TAGS)},
        },
        {
            "type": "aws:cloudwatch/eventBusPolicy:EventBusPolicy",
            "name": "retrain-bus-policy",
            "inputs": {"eventBusName": "mlops-stack-prod-retrain-from-444455556666", "policy": json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Sid": "AlarmsOfOneAccount", "Effect": "Allow",
                               "Principal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": "events:PutEvents",
                               "Resource": f"arn:aws:events:eu-west-1:{ACCOUNT}:event-bus/"
                                           "mlops-stack-prod-retrain-from-444455556666"}]})},
        },
        {
            "type": "aws:sagemaker/dataQualityJobDefinition:DataQualityJobDefinition",
            "name": "data-quality",
            "inputs": {
                "roleArn": ROLE_ARN,
                "jobResources": {
                    "clusterConfig": {"instanceCount": 1, "instanceType": "ml.m5.large", "volumeKmsKeyId": KEY_ARN}
                },
                "dataQualityJobOutputConfig": {"kmsKeyId": KEY_ARN, "monitoringOutputs": {}},
                "networkConfig": {"enableInterContainerTrafficEncryption": True},
                "tags": dict(TAGS),
            },
        },
        {
            "type": "aws:sagemaker/monitoringSchedule:MonitoringSchedule",
            "name": "monitoring-by-name",
            "inputs": {
                "monitoringScheduleConfig": {"monitoringJobDefinitionName": "dq", "monitoringType": "DataQuality"},
                "tags": dict(TAGS),
            },
        },
        {
            "type": "aws:sagemaker/monitoringSchedule:MonitoringSchedule",
            "name": "monitoring-inline",
            "inputs": {
                "monitoringScheduleConfig": {
                    "monitoringJobDefinition": monitoring_job,
                    "monitoringType": "DataQuality",
                },
                "tags": dict(TAGS),
            },
        },
        {
            "type": "aws:sagemaker/trainingJob:TrainingJob",
            "name": "training-job",
            "inputs": {
                "roleArn": ROLE_ARN,
                "trainingJobName": "mlops-stack-prod-train",
                "resourceConfig": {"instanceCount": 1, "instanceType": "ml.m5.large", "volumeKmsKeyId": KEY_ARN},
                "outputDataConfig": {"s3OutputPath": f"s3://{ARTIFACTS}/models", "kmsKeyId": KEY_ARN},
                "enableInterContainerTrafficEncryption": True,
                "tags": dict(TAGS),
            },
        },
    ]


def baseline() -> list[dict]:
    """A fresh compliant plan (each resource with a urn), safe to mutate."""
    resources = _resources()
    for r in resources:
        r["urn"] = f"urn:pulumi:prod::mlops-stack::{r['type']}::{r['name']}"
    return resources
