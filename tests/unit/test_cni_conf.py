"""Network configuration lists (testbed/spec/cniconf.py): reading a user's with every problem at
its file, line and field; what a node makes of one; what a plugin is given."""

from __future__ import annotations

import json

import pytest

from testbed.spec.cniconf import (
    LOOPBACK,
    ConfList,
    for_node,
    ips_store,
    kubenet,
    load_conflist,
    node_networks,
    plugin_description,
    plugin_request,
    port_mappings,
)
from testbed.spec.source import SpecError

GOOD = {"cniVersion": "1.0.0", "name": "mynet", "plugins": [
    {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local",
                                                  "ranges": [[{"subnet": "{{.PodCIDR}}"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": True}}]}


def problems(path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_conflist(path)
    return [str(p) for p in info.value.problems]


def test_a_good_list_in_json_and_in_yaml(tmp_path):
    (tmp_path / "net.conflist").write_text(json.dumps(GOOD, indent=2))
    conf = load_conflist(tmp_path / "net.conflist")
    assert (conf.name, conf.cni_version, conf.disable_check) == ("mynet", "1.0.0", False)
    assert [p["type"] for p in conf.plugins] == ["bridge", "portmap"]
    assert conf.source == str(tmp_path / "net.conflist")
    (tmp_path / "net.yaml").write_text(
        "cniVersion: 0.4.0\nname: mynet\ndisableCheck: 'true'\nplugins:\n- type: ptp\n")
    conf = load_conflist(tmp_path / "net.yaml")
    assert (conf.cni_version, conf.disable_check, conf.has_check) == ("0.4.0", True, True)
    assert conf.plugins == ({"type": "ptp"},)


def test_every_problem_is_named_with_its_file_line_and_field(tmp_path):
    text = """{
  "cniVersion": "0.2.0",
  "name": "-bad",
  "disableCheck": 3,
  "plugin": [],
  "plugins": [
    {"type": "bridge", "runtimeConfig": {}, "ipam": {"type": "host-local",
      "ranges": [[{"subnet": "{{.PodCIDRs}}"}]]}},
    {"capabilities": {"portMappings": "yes"}},
    {"type": "../bin/evil"},
    "portmap"
  ]
}
"""
    path = tmp_path / "bad.conflist"
    path.write_text(text)
    f = str(path)
    assert problems(path) == [
        f'{f}:5: plugin: unknown field "plugin"',
        f'{f}:2: cniVersion: Unsupported value: "0.2.0": supported values: "1.0.0", "0.4.0", "0.3.1", "0.3.0"',
        f"{f}:3: name: Invalid value: \"-bad\": must start with a letter or digit, followed by "
        "letters, digits, '_', '.' or '-'",
        f"{f}:4: disableCheck: Invalid value: 3: must be a boolean",
        f"{f}:7: plugins[0].runtimeConfig: Forbidden: set by the runtime when it runs the "
        "plugin, not in the configuration",
        f'{f}:8: plugins[0].ipam.ranges[0][0].subnet: Invalid value: "{{{{.PodCIDRs}}}}": '
        "{{.PodCIDRs}} is not filled in: the placeholders are {{.PodCIDR}} (the node's pod CIDR) "
        "and {{.MTU}} (the pod network's MTU)",
        f"{f}:9: plugins[1].type: Required value",
        f'{f}:9: plugins[1].capabilities.portMappings: Invalid value: "yes": must be a boolean',
        f"{f}:10: plugins[2].type: Invalid value: \"../bin/evil\": must be the file name of a "
        "plugin in the plugin directories, without '/'",
        f'{f}:11: plugins[3]: Invalid value: "portmap": must be an object',
    ]


def test_required_fields_and_an_empty_chain(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text('{"plugins": []}\n')
    assert problems(path) == [f"{path}:1: cniVersion: Required value", f"{path}:1: name: Required value",
                              f"{path}:1: plugins: Required value"]
    path.write_text("[1, 2]\n")
    assert problems(path) == [f"{path}:1: expected exactly one YAML mapping, found a list"]
    assert problems(tmp_path / "missing.conflist")[0].startswith(str(tmp_path / "missing.conflist"))


def test_a_node_fills_in_its_pod_cidr_and_its_own_host_local_store():
    user = ConfList("mynet", "1.0.0", (
        {"type": "bridge", "ipam": {"type": "host-local", "ranges": [[{"subnet": "{{ .PodCIDR }}"}]]}},
        {"type": "ptp", "ipam": {"type": "host-local", "subnet": "{{.PodCIDR}}", "dataDir": "/mine"}},
        {"type": "macvlan", "ipam": {"type": "dhcp"}}))
    node = for_node(user, "10.244.1.0/24", "/run/x/cni/w1/networks")
    assert node.plugins[0]["ipam"] == {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24"}]],
                                       "dataDir": "/run/x/cni/w1/networks"}
    assert node.plugins[1]["ipam"]["dataDir"] == "/mine"          # the user's own is kept
    assert "dataDir" not in node.plugins[2]["ipam"]               # not host-local
    assert user.plugins[0]["ipam"]["ranges"][0][0]["subnet"] == "{{ .PodCIDR }}"   # unchanged


def test_the_kubenet_chain_and_the_loopback_network_come_first():
    lo, eth0 = node_networks(None, "10.244.2.0/24", 1450, "/d")
    assert (lo.conf, lo.ifname) == (LOOPBACK, "lo")
    assert (LOOPBACK.name, LOOPBACK.cni_version, LOOPBACK.has_check) == ("cni-loopback", "0.3.1", False)
    assert eth0.ifname == "eth0" and eth0.conf.name == "kubenet" and eth0.conf.cni_version == "1.0.0"
    assert eth0.conf.disable_check      # Debian's portmap fails CHECK of IPv4-only pods (#819)
    bridge, portmap = eth0.conf.plugins
    assert bridge == {"type": "bridge", "name": "kubenet", "bridge": "cbr0", "isGateway": True,
                      "ipMasq": False, "hairpinMode": True, "mtu": 1450, "capabilities": {"ips": True},
                      "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.2.0/24"}]],
                               "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/d"}}
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
    assert kubenet(1500).plugins[0]["ipam"]["ranges"] == [[{"subnet": "{{.PodCIDR}}"}]]
    user = ConfList("u", "0.4.0", ({"type": "ptp"},))
    assert node_networks(user, "10.244.2.0/24", 1500, "/d")[1].conf.name == "u"
    assert ips_store(eth0.conf) == "/d/kubenet" and ips_store(user) is None


def test_a_plugin_gets_the_lists_name_and_version_the_previous_result_and_its_capabilities():
    conf = ConfList("net", "1.0.0", ())
    plugin = {"type": "portmap", "name": "own", "cniVersion": "0.1.0",
              "capabilities": {"portMappings": True, "bandwidth": False}}
    caps = {"portMappings": [{"hostPort": 80}], "bandwidth": {"rate": 1}, "mac": "x"}
    request = plugin_request(conf, plugin, {"cniVersion": "1.0.0", "ips": []}, caps)
    assert request == {"type": "portmap", "name": "net", "cniVersion": "1.0.0",
                       "capabilities": {"portMappings": True, "bandwidth": False},
                       "prevResult": {"cniVersion": "1.0.0", "ips": []},
                       "runtimeConfig": {"portMappings": [{"hostPort": 80}]}}
    assert plugin["name"] == "own"                                   # the list is not changed
    bare = plugin_request(conf, {"type": "bridge"}, None, caps)
    assert bare == {"type": "bridge", "name": "net", "cniVersion": "1.0.0"}
    assert plugin_description(plugin) == 'type="portmap" name="own"'
    assert plugin_description({"type": "bridge"}) == 'type="bridge"'


def test_host_ports_become_port_mappings_as_the_kubelet_passes_them():
    manifest = {"spec": {"containers": [
        {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080},
                                {"containerPort": 53, "hostPort": 5353, "protocol": "UDP",
                                 "hostIP": "172.16.1.2"},
                                {"containerPort": 9000}, {"containerPort": 81, "hostPort": 0}]},
        {"name": "b", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}
    assert port_mappings(manifest) == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "172.16.1.2"}]
    assert port_mappings({"spec": {"containers": [{"name": "a"}]}}) == []


def test_the_mtu_placeholder_is_a_number_where_it_is_the_whole_value(tmp_path):
    (tmp_path / "net.conflist").write_text(
        '{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge", "mtu": "{{.MTU}}",'
        ' "note": "mtu {{ .MTU }} on {{.PodCIDR}}"}]}')
    node = for_node(load_conflist(tmp_path / "net.conflist"), "10.244.1.0/24", "/run/x", 1450)
    assert node.plugins[0]["mtu"] == 1450
    assert node.plugins[0]["note"] == "mtu 1450 on 10.244.1.0/24"


def test_every_plugin_the_list_names_must_be_found_in_the_plugin_directories(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "mine").write_text("#!/bin/sh\n")
    (tmp_path / "net.conflist").write_text(
        '{"cniVersion": "1.0.0", "name": "n", "plugins": [\n'
        '  {"type": "mine", "ipam": {"type": "nosuch-ipam"}},\n'
        '  {"type": "nosuchplugin"}]}')
    path = [str(tmp_path / "bin"), "/usr/lib/cni"]
    with pytest.raises(SpecError) as info:
        load_conflist(tmp_path / "net.conflist", path)
    found = [(p.line, p.field, p.message) for p in info.value.problems]
    where = f"[{tmp_path / 'bin'} /usr/lib/cni]"
    assert found == [
        (2, "plugins[0].ipam.type", f'Invalid value: "nosuch-ipam": failed to find plugin "nosuch-ipam" in path {where}'),
        (3, "plugins[1].type", f'Invalid value: "nosuchplugin": failed to find plugin "nosuchplugin" in path {where}')]
    assert load_conflist(tmp_path / "net.conflist") is not None      # without a path: not looked up
