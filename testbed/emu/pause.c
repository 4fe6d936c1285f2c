/*
 * testbed-pause: the pod sandbox holder and the container launcher, in one small static binary.
 *
 *   testbed-pause pause HOSTNAME [--wire]
 *       Like Kubernetes' pause container: makes new network, UTS and IPC namespaces, sets the
 *       hostname, brings up lo, prints "ok", and sleeps until SIGTERM or SIGINT (then exits 0),
 *       reaping any child it inherits. Its namespaces are the pod's. About 0.7 MB resident.
 *       With --wire, it first reads one line "ADDRESS PREFIXLEN GATEWAY [MTU]" from standard input
 *       once the node has made the pod's eth0 (interface 2), gives eth0 that address (and MTU),
 *       brings it up, adds the default route, and prints "ready" (or "error: ..."): the pod's
 *       side of the wiring, done inside the pod, in parallel for many pods, with plain ioctls.
 *       Without --wire (real CNI plugins wire the pod) it closes its standard streams at once.
 *
 *   testbed-pause enter PID [--bind SRC:DST]... [--sysfs] [--chdir DIR] -- ARGV...
 *       A container: joins PID's network, UTS and IPC namespaces, makes a private mount
 *       namespace, bind-mounts the pod's own files (/etc/hosts, /etc/resolv.conf), remounts
 *       /sys so the pod sees its own interfaces, and execs ARGV. No shell is involved.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/route.h>
#include <netinet/in.h>

static void on_term(int sig) { (void)sig; _exit(0); }
static void on_chld(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

static int die(const char *what) {
    fprintf(stderr, "testbed-pause: %s: %s\n", what, strerror(errno));
    return 111;
}

static int set_addr(int fd, struct ifreq *req, unsigned long op, const char *text) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&req->ifr_addr;
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    if (inet_pton(AF_INET, text, &sin->sin_addr) != 1) { errno = EINVAL; return -1; }
    return ioctl(fd, op, req);
}

/* The pod's side of the wiring: eth0's address (and MTU), eth0 up, default route via the gateway. */
static int configure(const char *line) {
    char address[32], gateway[32], mask[32];
    int prefix, mtu = 0;
    int fields = sscanf(line, "%31s %d %31s %d", address, &prefix, gateway, &mtu);
    if (fields < 3 || prefix < 0 || prefix > 32 || (fields == 4 && (mtu < 68 || mtu > 65535))) {
        errno = EINVAL;
        return -1;
    }
    unsigned long bits = prefix ? 0xffffffffUL << (32 - prefix) : 0;
    snprintf(mask, sizeof mask, "%lu.%lu.%lu.%lu", (bits >> 24) & 255, (bits >> 16) & 255, (bits >> 8) & 255, bits & 255);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq req;
    memset(&req, 0, sizeof req);
    req.ifr_ifindex = 2;
    if (fd < 0 || ioctl(fd, SIOCGIFNAME, &req)) return -1;           /* eth0 is interface 2 */
    if (set_addr(fd, &req, SIOCSIFADDR, address) || set_addr(fd, &req, SIOCSIFNETMASK, mask)) return -1;
    if (mtu) {
        req.ifr_mtu = mtu;
        if (ioctl(fd, SIOCSIFMTU, &req)) return -1;
    }
    if (ioctl(fd, SIOCGIFFLAGS, &req)) return -1;
    req.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &req)) return -1;
    struct rtentry route;
    memset(&route, 0, sizeof route);
    struct sockaddr_in *gw = (struct sockaddr_in *)&route.rt_gateway;
    gw->sin_family = AF_INET;
    if (inet_pton(AF_INET, gateway, &gw->sin_addr) != 1) { errno = EINVAL; return -1; }
    ((struct sockaddr_in *)&route.rt_dst)->sin_family = AF_INET;
    ((struct sockaddr_in *)&route.rt_genmask)->sin_family = AF_INET;
    route.rt_flags = RTF_UP | RTF_GATEWAY;
    if (ioctl(fd, SIOCADDRT, &route)) return -1;
    close(fd);
    return 0;
}

static int do_pause(const char *hostname, int wire) {
    if (unshare(CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC)) return die("unshare");
    if (sethostname(hostname, strlen(hostname))) return die("sethostname");
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq req;
    memset(&req, 0, sizeof req);
    strcpy(req.ifr_name, "lo");
    if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &req)) return die("lo flags");
    req.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &req)) return die("lo up");
    close(fd);
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = on_term;
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    act.sa_handler = on_chld;
    act.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &act, NULL);
    if (write(1, "ok\n", 3) != 3) return die("write");
    if (wire) {
        char line[128];
        ssize_t n = 0, got;
        while (n < (ssize_t)sizeof line - 1 && (got = read(0, line + n, sizeof line - 1 - n)) > 0) {
            n += got;
            if (memchr(line, '\n', n)) break;
        }
        line[n > 0 ? n : 0] = 0;
        if (n > 0) {
            if (configure(line)) {
                dprintf(1, "error: %s\n", strerror(errno));
                return 112;
            }
            if (write(1, "ready\n", 6) != 6) return die("write");
        }
    }
    close(0);
    close(1);
    for (;;) pause();
}

static int join(const char *pid, const char *ns, int type) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%s/ns/%s", pid, ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, type)) return -1;
    close(fd);
    return 0;
}

static int do_enter(int argc, char **argv) {
    const char *pid = argv[2];
    if (join(pid, "net", CLONE_NEWNET) || join(pid, "uts", CLONE_NEWUTS) || join(pid, "ipc", CLONE_NEWIPC))
        return die("joining the pod's namespaces");
    if (unshare(CLONE_NEWNS)) return die("unshare mount namespace");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) return die("make / private");
    int i = 3;
    for (; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--bind") && i + 1 < argc) {
            char *spec = argv[++i], *colon = strchr(spec, ':');
            if (!colon) { fprintf(stderr, "testbed-pause: --bind wants SRC:DST\n"); return 2; }
            *colon = 0;
            if (mount(spec, colon + 1, NULL, MS_BIND, NULL)) return die(colon + 1);
        } else if (!strcmp(argv[i], "--sysfs")) {
            if (mount("sysfs", "/sys", "sysfs", 0, NULL)) return die("mount /sys");
        } else if (!strcmp(argv[i], "--chdir") && i + 1 < argc) {
            if (chdir(argv[++i])) return die(argv[i]);
        } else {
            fprintf(stderr, "testbed-pause: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (i + 1 >= argc) { fprintf(stderr, "testbed-pause: nothing to run\n"); return 2; }
    execvp(argv[i + 1], argv + i + 1);
    fprintf(stderr, "testbed-pause: cannot run %s: %s\n", argv[i + 1], strerror(errno));
    return 127;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "pause"))
        return do_pause(argv[2], argc >= 4 && !strcmp(argv[3], "--wire"));
    if (argc >= 3 && !strcmp(argv[1], "enter")) return do_enter(argc, argv);
    fprintf(stderr, "usage: testbed-pause pause HOSTNAME [--wire] | enter PID [options] -- ARGV...\n");
    return 2;
}
