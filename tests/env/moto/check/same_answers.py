"""Drive moto as shipped and moto through the project's wrapper through the
same calls and fail unless every answer is the same text.

The wrapper's scale patches (ec2_instance_index, asg_instance_index,
asg_group_render) must change how fast moto answers, never what it answers.
Both servers start here on free ports and are seeded alike, so they draw the
same IDs; only the clock differs, and timestamps are masked before
comparing. After a scale-in through SetDesiredCapacity moto orders a group's
instances by memory address (it subtracts sets), so from there on the
instance lists are compared as sets.

Usage: python same_answers.py   (the python of the moto virtualenv; exit 0 = same)
"""

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
WRAPPER = os.path.join(os.path.dirname(HERE), "npo_moto_server.py")
TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2}| UTC)?"
)
INSTANCES = re.compile(r"<(Instances|AutoScalingInstances)>(.*?)</\1>")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """One moto server and boto3 clients that keep every raw answer."""

    def __init__(self, name: str, command: list, logdir: str, read_timeout: int = 300) -> None:
        self.name = name
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        log = open(os.path.join(logdir, f"{name}.log"), "w")
        self.process = subprocess.Popen(
            command + ["-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/")
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"{name} moto did not start; see {log.name}")
                time.sleep(0.1)
        self.answers: list = []
        config = Config(retries={"max_attempts": 1}, read_timeout=read_timeout)
        kwargs = dict(
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=config,
        )
        self.asg = boto3.client("autoscaling", **kwargs)
        self.ec2 = boto3.client("ec2", **kwargs)
        for client in (self.asg, self.ec2):
            client.meta.events.register("after-call", self._keep)

    def _keep(self, http_response, model, **_):
        self.answers.append((model.name, http_response.status_code, http_response.text))

    def post(self, path: str) -> None:
        urllib.request.urlopen(urllib.request.Request(self.endpoint + path, method="POST"))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def normalized(text: str, unordered: bool) -> str:
    text = TIMESTAMP.sub("<time>", text)
    if unordered:
        def sort_members(m):
            members = sorted(m.group(2).split("</member>"))
            return f"<{m.group(1)}>" + "</member>".join(members) + f"</{m.group(1)}>"
        text = INSTANCES.sub(sort_members, text)
    return text


class Pair:
    """The same call on both servers; the answers must match."""

    def __init__(self, plain: Moto, patched: Moto) -> None:
        self.servers = (plain, patched)
        self.unordered = False
        self.calls = 0

    def __call__(self, what: str, call):
        results = []
        for server in self.servers:
            before = len(server.answers)
            try:
                result = call(server)
            except Exception as err:  # the error text is compared below
                result = err
            if len(server.answers) == before and isinstance(result, Exception):
                # botocore reports no call whose answer it cannot parse (moto's
                # HTML error page); its error carries the body.
                server.answers.append(("unparsed", 0, str(result)))
            if len(server.answers) != before + 1:
                raise SystemExit(f"{what}: no answer from {server.name}: {result!r}")
            results.append(result)
        (op, s1, b1), (_, s2, b2) = (s.answers[-1] for s in self.servers)
        n1, n2 = normalized(b1, self.unordered), normalized(b2, self.unordered)
        if (s1, n1) != (s2, n2):
            print(f"DIFFERENT: {what} ({op})", file=sys.stderr)
            print(f"  moto:    {s1} {n1[:3000]}", file=sys.stderr)
            print(f"  wrapper: {s2} {n2[:3000]}", file=sys.stderr)
            raise SystemExit(1)
        self.calls += 1
        return results[0]


def ids_of(group_answer) -> list:
    return [i["InstanceId"] for i in group_answer["AutoScalingGroups"][0]["Instances"]]


def create_groups(same: Pair) -> None:
    same("launch configuration", lambda m: m.asg.create_launch_configuration(
        LaunchConfigurationName="lc", ImageId="ami-12c6146b", InstanceType="t3.micro"))
    same("group from a launch configuration", lambda m: m.asg.create_auto_scaling_group(
        AutoScalingGroupName="a", LaunchConfigurationName="lc", MinSize=0, MaxSize=20,
        DesiredCapacity=8, AvailabilityZones=["us-east-1a"]))
    same("launch template", lambda m: m.ec2.create_launch_template(
        LaunchTemplateName="tpl",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.small"}))
    same("group from a launch template", lambda m: m.asg.create_auto_scaling_group(
        AutoScalingGroupName="b", LaunchTemplate={"LaunchTemplateName": "tpl"},
        MinSize=0, MaxSize=10, DesiredCapacity=3, AvailabilityZones=["us-east-1b"],
        Tags=[{"Key": "k", "Value": "v", "PropagateAtLaunch": True}]))


def describe_everything(same: Pair, ids: list, step: str) -> None:
    same(f"{step}: all groups", lambda m: m.asg.describe_auto_scaling_groups())
    same(f"{step}: group a", lambda m: m.asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=["a"]))
    same(f"{step}: all instances", lambda m: m.asg.describe_auto_scaling_instances())
    for some in ([ids[2]], [ids[5], ids[1]], [ids[-1], ids[0], ids[3]], ["i-0123456789abcdef0"]):
        same(f"{step}: instances {some}", lambda m: m.asg.describe_auto_scaling_instances(
            InstanceIds=some))
    for some in ([ids[2]], [ids[-1], ids[1]], [ids[0], "i-0123456789abcdef0"], [ids[1], ids[1]]):
        same(f"{step}: ec2 instances {some}", lambda m: m.ec2.describe_instances(
            InstanceIds=some))
    same(f"{step}: ec2 running", lambda m: m.ec2.describe_instances(
        InstanceIds=[ids[0], ids[-1]],
        Filters=[{"Name": "instance-state-name", "Values": ["running"]}]))
    same(f"{step}: ec2 status", lambda m: m.ec2.describe_instance_status(
        InstanceIds=[ids[1]], IncludeAllInstances=True))
    same(f"{step}: tags of one", lambda m: m.ec2.describe_tags(
        Filters=[{"Name": "resource-id", "Values": [ids[1]]}]))
    same(f"{step}: tags by pattern", lambda m: m.ec2.describe_tags(
        Filters=[{"Name": "resource-id", "Values": [ids[1][:6] + "*"]}]))


def scenario(same: Pair) -> None:
    create_groups(same)
    a = ids_of(same("ids of a", lambda m: m.asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=["a"])))
    b = ids_of(same("ids of b", lambda m: m.asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=["b"])))
    describe_everything(same, a + b, "created")
    volume = same("ec2 instance", lambda m: m.ec2.describe_instances(InstanceIds=[a[0]]))
    volume = volume["Reservations"][0]["Instances"][0]["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    same("one volume", lambda m: m.ec2.describe_volumes(VolumeIds=[volume]))
    same("unknown volume", lambda m: m.ec2.describe_volumes(VolumeIds=["vol-0123456789abcdef0"]))

    same("terminate, decrement", lambda m: m.asg.terminate_instance_in_auto_scaling_group(
        InstanceId=a[0], ShouldDecrementDesiredCapacity=True))
    same("terminate, no decrement", lambda m: m.asg.terminate_instance_in_auto_scaling_group(
        InstanceId=a[3], ShouldDecrementDesiredCapacity=False))
    same("terminate in b", lambda m: m.asg.terminate_instance_in_auto_scaling_group(
        InstanceId=b[1], ShouldDecrementDesiredCapacity=True))
    same("terminate again", lambda m: m.asg.terminate_instance_in_auto_scaling_group(
        InstanceId=a[0], ShouldDecrementDesiredCapacity=True))
    same("terminate unknown", lambda m: m.asg.terminate_instance_in_auto_scaling_group(
        InstanceId="i-0123456789abcdef0", ShouldDecrementDesiredCapacity=True))
    a = ids_of(same("ids of a", lambda m: m.asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=["a"])))
    describe_everything(same, a + b, "terminated")

    same("protect", lambda m: m.asg.set_instance_protection(
        AutoScalingGroupName="a", InstanceIds=[a[0], a[4]], ProtectedFromScaleIn=True))
    same("unhealthy", lambda m: m.asg.set_instance_health(
        InstanceId=a[2], HealthStatus="Unhealthy"))
    same("standby", lambda m: m.asg.enter_standby(
        AutoScalingGroupName="a", InstanceIds=[a[1]], ShouldDecrementDesiredCapacity=True))
    same("template version", lambda m: m.ec2.create_launch_template_version(
        LaunchTemplateName="tpl", LaunchTemplateData={"InstanceType": "t3.medium"}))
    same("default version", lambda m: m.ec2.modify_launch_template(
        LaunchTemplateName="tpl", DefaultVersion="2"))
    same("detach", lambda m: m.asg.detach_instances(
        AutoScalingGroupName="a", InstanceIds=[a[5]], ShouldDecrementDesiredCapacity=False))
    same("detach two", lambda m: m.asg.detach_instances(
        AutoScalingGroupName="b", InstanceIds=[b[2], b[0]], ShouldDecrementDesiredCapacity=True))
    # EC2 terminate of VMs in no group (detached above), then of one still
    # in group a: `notify_terminate_instances` with and without a group to
    # change.
    same("end detached", lambda m: m.ec2.terminate_instances(InstanceIds=[a[5], b[2]]))
    same("end one in a", lambda m: m.ec2.terminate_instances(InstanceIds=[a[3]]))
    same("scale out", lambda m: m.asg.set_desired_capacity(
        AutoScalingGroupName="a", DesiredCapacity=10))
    same("exit standby", lambda m: m.asg.exit_standby(
        AutoScalingGroupName="a", InstanceIds=[a[1]]))
    a = ids_of(same("ids of a", lambda m: m.asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=["a"])))
    describe_everything(same, a + b, "changed")

    same("scale in", lambda m: m.asg.set_desired_capacity(
        AutoScalingGroupName="a", DesiredCapacity=4))
    same.unordered = True
    same("after scale in", lambda m: m.asg.describe_auto_scaling_groups())
    same("instances after scale in", lambda m: m.asg.describe_auto_scaling_instances(
        InstanceIds=a))

    # A reset must leave no index behind that answers for the old world.
    for server in same.servers:
        server.post("/moto-api/reset")
        server.post("/moto-api/seed?a=7")
    same.unordered = False
    create_groups(same)
    a2 = ids_of(same("ids after reset", lambda m: m.asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=["a"])))
    same("old instance after reset", lambda m: m.ec2.describe_instances(InstanceIds=[a[2]]))
    same("old instance in a group", lambda m: m.asg.describe_auto_scaling_instances(
        InstanceIds=[a[2]]))
    same("terminate after reset", lambda m: m.asg.terminate_instance_in_auto_scaling_group(
        InstanceId=a2[1], ShouldDecrementDesiredCapacity=False))
    describe_everything(same, a2, "after reset")


def main() -> None:
    python = sys.executable
    moto_server = os.path.join(os.path.dirname(python), "moto_server")
    with tempfile.TemporaryDirectory(prefix="npo-same-answers-") as logs:
        plain = Moto("moto", [moto_server], logs)
        try:
            patched = Moto("wrapper", [python, WRAPPER], logs)
            try:
                for server in (plain, patched):
                    server.post("/moto-api/seed?a=42")
                same = Pair(plain, patched)
                scenario(same)
            finally:
                patched.stop()
        finally:
            plain.stop()
    print(f"same answers from moto and the wrapper in {same.calls} calls")


if __name__ == "__main__":
    main()
