/*
 * testbed-pause: the pod sandbox holder and the container launcher, in one small static binary.
 *
 *   testbed-pause pause HOSTNAME
 *       Like Kubernetes' pause container: makes new network, UTS and IPC namespaces, sets the
 *       hostname, brings up lo, prints "ok", and sleeps until SIGTERM or SIGINT (then exits 0),
 *       reaping any child it inherits. Its namespaces are the pod's. About 0.7 MB resident.
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

static void on_term(int sig) { (void)sig; _exit(0); }
static void on_chld(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

static int die(const char *what) {
    fprintf(stderr, "testbed-pause: %s: %s\n", what, strerror(errno));
    return 111;
}

static int do_pause(const char *hostname) {
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
    if (argc >= 3 && !strcmp(argv[1], "pause")) return do_pause(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "enter")) return do_enter(argc, argv);
    fprintf(stderr, "usage: testbed-pause pause HOSTNAME | enter PID [options] -- ARGV...\n");
    return 2;
}
