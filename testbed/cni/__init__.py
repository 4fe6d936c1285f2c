"""Real CNI plugins, run as a container runtime runs them (libcni's way).

result.py (pure): plugin results of every supported version in one form; cache.py (acts,
files): libcni's result cache; invoke.py (acts): finding and running the plugins, the chains
of ADD, DEL and CHECK. Network configuration lists (reading a user's, the kubenet chain, what a
node makes of one) are pure and read with the other input files: testbed/spec/cniconf.py.
emu/cninet.py puts it all behind the pod network interface (emu/podnet.py).
"""
