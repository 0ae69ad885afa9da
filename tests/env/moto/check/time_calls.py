"""Time moto's answers at scale: one group of N instances, then the calls the
operator makes, each timed as raw HTTP (request sent to body read, no SDK
parsing), median of a few.

Usage: python time_calls.py N wrapper|moto
  wrapper: tests/env/moto/npo_moto_server.py (the project's moto)
  moto:    moto_server as shipped
"""

import os
import statistics
import sys
import time
import urllib.parse
import urllib.request

from same_answers import WRAPPER, Moto

SERVICE_VERSIONS = {"autoscaling": "2011-01-01", "ec2": "2016-11-15"}


def call(endpoint: str, service: str, action: str, **params) -> bytes:
    """One Query-protocol call; moto reads the service from the credential
    scope and checks no signature."""
    body = urllib.parse.urlencode(
        {"Action": action, "Version": SERVICE_VERSIONS[service], **params}
    ).encode()
    request = urllib.request.Request(endpoint, data=body, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    request.add_header(
        "Authorization",
        f"AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, "
        "SignedHeaders=host, Signature=0",
    )
    with urllib.request.urlopen(request, timeout=600) as answer:
        return answer.read()


def timed(label: str, runs: int, one) -> None:
    seconds, size = [], 0
    for n in range(runs):
        start = time.perf_counter()
        size = len(one(n))
        seconds.append(time.perf_counter() - start)
    print(
        f"{label:48s} median {statistics.median(seconds) * 1000:8.1f} ms"
        f"  max {max(seconds) * 1000:8.1f} ms  {size:>9,} B",
        flush=True,
    )


def main() -> None:
    size, which = int(sys.argv[1]), sys.argv[2]
    python = sys.executable
    command = [python, WRAPPER] if which == "wrapper" else [
        os.path.join(os.path.dirname(python), "moto_server")]
    # moto as shipped takes minutes to launch 20,000 instances in one call.
    server = Moto(which, command, os.environ.get("TMPDIR", "/tmp"), read_timeout=3600)
    try:
        start = time.perf_counter()
        server.asg.create_launch_configuration(
            LaunchConfigurationName="g", ImageId="ami-12c6146b", InstanceType="t3.micro")
        server.asg.create_auto_scaling_group(
            AutoScalingGroupName="g", LaunchConfigurationName="g", MinSize=0,
            MaxSize=size + 10, DesiredCapacity=size, AvailabilityZones=["us-east-1a"])
        print(f"{which}: {size} instances launched in {time.perf_counter() - start:.1f} s")
        ids = [i["InstanceId"] for i in server.asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=["g"])["AutoScalingGroups"][0]["Instances"]]
        assert len(ids) == size
        ep = server.endpoint
        timed("DescribeAutoScalingGroups (the group)", 3, lambda n: call(
            ep, "autoscaling", "DescribeAutoScalingGroups", **{"AutoScalingGroupNames.member.1": "g"}))
        timed("DescribeAutoScalingInstances (one ID)", 5, lambda n: call(
            ep, "autoscaling", "DescribeAutoScalingInstances", **{"InstanceIds.member.1": ids[size // 2 + n]}))
        timed("ec2 DescribeInstances (one ID)", 5, lambda n: call(
            ep, "ec2", "DescribeInstances", **{"InstanceId.1": ids[size // 3 + n]}))
        timed("TerminateInstanceInAutoScalingGroup, decrement", 5, lambda n: call(
            ep, "autoscaling", "TerminateInstanceInAutoScalingGroup",
            InstanceId=ids[n], ShouldDecrementDesiredCapacity="true"))
        timed("TerminateInstanceInAutoScalingGroup, no decrement", 5, lambda n: call(
            ep, "autoscaling", "TerminateInstanceInAutoScalingGroup",
            InstanceId=ids[100 + n], ShouldDecrementDesiredCapacity="false"))
        desired = size - 5
        timed("SetDesiredCapacity -1", 5, lambda n: call(
            ep, "autoscaling", "SetDesiredCapacity", AutoScalingGroupName="g",
            DesiredCapacity=str(desired - 1 - n)))
        timed("SetDesiredCapacity +1", 5, lambda n: call(
            ep, "autoscaling", "SetDesiredCapacity", AutoScalingGroupName="g",
            DesiredCapacity=str(desired - 5 + n)))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
