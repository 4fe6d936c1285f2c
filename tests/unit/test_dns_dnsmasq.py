"""testbed.dns.dnsmasq: configuration and hosts file text from records (pure)."""

from __future__ import annotations

import pytest

from testbed.dns.dnsmasq import Settings, argv, render, render_config, render_hosts
from testbed.dns.records import (
    AddressRecord,
    CnameRecord,
    PtrRecord,
    Records,
    SrvRecord,
    build_records,
)
from tests.unit.test_dns_records import endpoint, endpoint_slice, pod, service

SETTINGS = Settings(workdir="/run/dns")


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_argv_runs_in_the_foreground_with_only_the_rendered_file():
    assert argv(SETTINGS) == ["dnsmasq", "--keep-in-foreground", "--conf-file=/run/dns/dnsmasq.conf"]


def test_empty_config_is_sealed_and_answers_negatively():
    config = lines(render_config(Records(), SETTINGS))
    assert config == [
        "no-resolv", "no-hosts", "no-poll", "user=root", "port=53",
        "pid-file=/run/dns/dnsmasq.pid", "dhcp-leasefile=/run/dns/dnsmasq.leases",
        "hostsdir=/run/dns/hosts.d", "local-ttl=5", "cache-size=0",
        "local=/cluster.local/", "local=/#/", "log-facility=-",
    ]
    # Nothing may send a query anywhere: no upstream server lines at all.
    assert not [x for x in config if x.startswith(("server=", "resolv-file", "addn-hosts=/etc"))]


def test_settings_port_domain_and_query_log():
    config = lines(render_config(Records(), Settings(workdir="/w", domain="corp.test.", port=5353,
                                                     ttl=30, log_queries=True)))
    assert "port=5353" in config and "local=/corp.test/" in config
    assert "local-ttl=30" in config and config[-1] == "log-queries"


def test_srv_and_cname_lines_are_in_the_config_not_the_hosts_file():
    records = Records(srvs=(SrvRecord("_http._tcp.web.default.svc.cluster.local",
                                      "web.default.svc.cluster.local", 80),),
                      cnames=(CnameRecord("db.default.svc.cluster.local", "db.example.com"),))
    rendered = render(records, SETTINGS)
    assert lines(rendered.config)[-2:] == [
        "srv-host=_http._tcp.web.default.svc.cluster.local,web.default.svc.cluster.local,80,0,100",
        "cname=db.default.svc.cluster.local,db.example.com",
    ]
    assert lines(rendered.hosts) == []


def test_hosts_file_puts_each_address_ptr_name_first():
    svc = service("db", cluster_ip="None")
    eps = endpoint_slice("db", [endpoint("10.244.1.5", hostname="db-0")])
    records = build_records([svc, service("web", cluster_ip="10.96.0.20")], [eps],
                            [pod("db-0", "10.244.1.5"), pod("lonely", "10.244.2.9")])
    assert lines(render_hosts(records)) == [
        "10.244.1.5 db-0.db.default.svc.cluster.local",   # PTR of the endpoint IP
        "10.96.0.20 web.default.svc.cluster.local",       # PTR of the ClusterIP
        "10.244.1.5 db.default.svc.cluster.local",
        "10.244.1.5 10-244-1-5.default.pod.cluster.local",
        "10.244.2.9 10-244-2-9.default.pod.cluster.local",
    ]


def test_a_ptr_whose_name_has_no_address_record_becomes_a_ptr_record_line():
    records = Records(ptrs=(PtrRecord("10.96.0.7", "gone.default.svc.cluster.local"),))
    rendered = render(records, SETTINGS)
    assert "ptr-record=7.0.96.10.in-addr.arpa,gone.default.svc.cluster.local" in lines(rendered.config)
    assert lines(rendered.hosts) == []


def test_one_ptr_per_address_first_wins():
    a, b = "a.default.svc.cluster.local", "b.default.svc.cluster.local"
    records = Records(addresses=(AddressRecord(a, "10.244.1.5"), AddressRecord(b, "10.244.1.5")),
                      ptrs=(PtrRecord("10.244.1.5", a), PtrRecord("10.244.1.5", b)))
    assert lines(render_hosts(records)) == [f"10.244.1.5 {a}", f"10.244.1.5 {b}"]


def test_ipv6_addresses_are_normalised():
    records = Records(addresses=(AddressRecord("w.default.svc.cluster.local", "FD00:0::30"),))
    assert lines(render_hosts(records)) == ["fd00::30 w.default.svc.cluster.local"]


def test_full_cluster_render_is_deterministic_and_only_config_changes_need_restart():
    services = [service("web", cluster_ip="10.96.0.20", ports=[{"name": "http", "port": 80}]),
                service("db", cluster_ip="None", ports=[{"name": "pg", "port": 5432}])]
    slices = [endpoint_slice("db", [endpoint("10.244.1.5")],
                             ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])]
    pods = [pod("a", "10.244.1.5"), pod("b", "10.244.2.6")]
    first = render(build_records(services, slices, pods), SETTINGS)
    again = render(build_records(services[::-1], slices, pods[::-1]), SETTINGS)
    assert first == again
    # A new pod changes only the hosts file: no dnsmasq restart for pod churn.
    more = render(build_records(services, slices, pods + [pod("c", "10.244.2.7")]), SETTINGS)
    assert more.config == first.config and more.hosts != first.hosts
    # A new named port changes the config.
    services.append(service("api", cluster_ip="10.96.0.21", ports=[{"name": "https", "port": 443}]))
    assert render(build_records(services, slices, pods), SETTINGS).config != first.config


@pytest.mark.parametrize("records", [
    Records(addresses=(AddressRecord("evil\nserver=8.8.8.8", "10.0.0.1"),)),
    Records(srvs=(SrvRecord("_a._tcp.x", "y,z", 80),)),
    Records(cnames=(CnameRecord("a.b", "c..d"),)),
    Records(srvs=(SrvRecord("_a._tcp.x", "y", 70000),)),
])
def test_unsafe_values_are_refused_rather_than_written(records):
    with pytest.raises(ValueError):
        render(records, SETTINGS)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        render_config(Records(), Settings(workdir="/w", domain="bad domain"))
    with pytest.raises(ValueError):
        render_config(Records(), Settings(workdir="/w\nserver=1.1.1.1"))
