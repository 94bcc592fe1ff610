/* Attack probe run inside a container by the container tests (built static by ct_support with
 * the host's cc, copied into the container's root: busybox has no way to make these calls).
 * Each mode tries one thing a tenant must not be able to do and prints "ok ..." if it worked,
 * or "denied <errno name>" if the kernel refused. Exit status 0 either way: the test decides. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netlink.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int denied(const char *what) {
    printf("denied %s %s\n", what, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
    return 0;
}

static void write_file(const char *path, const char *s) {
    int fd = open(path, O_WRONLY);
    if (fd >= 0) {
        if (write(fd, s, strlen(s)) < 0) {}
        close(fd);
    }
}

/* A new user namespace where we are root (uid/gid 0 mapped to what we are now). */
static int new_userns(int extra) {
    uid_t u = getuid();
    gid_t g = getgid();
    if (unshare(CLONE_NEWUSER | extra) != 0) return -1;
    char m[64];
    write_file("/proc/self/setgroups", "deny");
    snprintf(m, sizeof m, "0 %u 1", u);
    write_file("/proc/self/uid_map", m);
    snprintf(m, sizeof m, "0 %u 1", g);
    write_file("/proc/self/gid_map", m);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "userns-nft")) {
        /* The usual road to host root: a user + network namespace of one's own, then nf_tables. */
        if (new_userns(CLONE_NEWNET) != 0) return denied("unshare");
        int s = socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);
        if (s < 0) return denied("socket");
        struct {
            struct nlmsghdr nh;
            struct nfgenmsg nf;
        } req = {0};
        req.nh.nlmsg_len = sizeof req;
        req.nh.nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE;
        req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
        req.nh.nlmsg_seq = 1;
        req.nf.nfgen_family = AF_UNSPEC;
        if (send(s, &req, sizeof req, 0) < 0) return denied("send");
        char buf[8192];
        ssize_t n = recv(s, buf, sizeof buf, 0);
        if (n < (ssize_t)sizeof(struct nlmsghdr)) return denied("recv");
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        if (h->nlmsg_type == NLMSG_ERROR) {
            errno = -((struct nlmsgerr *)NLMSG_DATA(h))->error;
            return denied("nft");
        }
        printf("ok reached nf_tables\n");
        return 0;
    }
    if (!strcmp(mode, "cgroup-root")) {
        /* Mount the cgroup2 root (of our cgroup namespace) and make a group there. */
        const char *name = argc > 2 ? argv[2] : "vessel-probe";
        mkdir("/tmp/cg", 0755);
        if (mount("none", "/tmp/cg", "cgroup2", 0, NULL) != 0) {
            if (new_userns(CLONE_NEWNS) != 0) return denied("unshare");
            if (mount("none", "/tmp/cg", "cgroup2", 0, NULL) != 0) return denied("mount");
        }
        char p[256];
        snprintf(p, sizeof p, "/tmp/cg/%s", name);
        if (mkdir(p, 0755) != 0) return denied("mkdir");
        rmdir(p);
        printf("ok made cgroup %s\n", name);
        return 0;
    }
    if (!strcmp(mode, "keyring")) {
        /* Find a key by description in the user keyring (the host root's, if we are host root). */
        const char *desc = argc > 2 ? argv[2] : "vessel-probe";
        long id = syscall(SYS_keyctl, 10 /* KEYCTL_SEARCH */, -4 /* KEY_SPEC_USER_KEYRING */, "user", desc, 0);
        if (id < 0) return denied("keyctl");
        char buf[256] = {0};
        long n = syscall(SYS_keyctl, 11 /* KEYCTL_READ */, id, buf, sizeof buf - 1);
        if (n < 0) return denied("read");
        printf("ok read %s\n", buf);
        return 0;
    }
    if (!strcmp(mode, "syscall")) {
        /* A bare syscall by number with zero arguments: seccomp answers before the kernel
         * looks at them (EPERM), the kernel itself would answer EINVAL/EFAULT/EBADF. */
        long nr = strtol(argc > 2 ? argv[2] : "-1", NULL, 10);
        long r = syscall(nr, 0, 0, 0, 0, 0, 0);
        if (r < 0) return denied("syscall");
        printf("ok %ld\n", r);
        return 0;
    }
    fprintf(stderr, "usage: probe userns-nft | cgroup-root NAME | keyring DESC | syscall NR\n");
    return 2;
}
