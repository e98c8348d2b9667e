/* Load generator for the benchmarks (bench/linux_burst.sh, bench/compare.sh).
 *
 *   loadgen N K OUT [RATE STAMPS]
 *     forks N children, at most K outstanding, each exiting at once with
 *     status (pid & 0xff); reaps them and writes "pid status" per child to
 *     OUT, so every exit can be checked exactly. With RATE > 0 the forks are
 *     paced at RATE per second, and each child first appends
 *     "pid realtime_ns" to STAMPS (the moment just before its _exit), for
 *     exit-to-delivery latency.
 *
 *   loadgen stamp
 *     copies stdin to stdout, each line prefixed with the CLOCK_REALTIME ns
 *     at which it was read and a tab: the delivery time of a monitor's
 *     output lines.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int stamp(void) {
    static char buf[1 << 16];
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    setvbuf(stdout, buf, _IOFBF, sizeof buf);
    while ((len = getline(&line, &cap, stdin)) > 0) {
        printf("%lld\t", now_ns(CLOCK_REALTIME));
        fwrite(line, 1, (size_t)len, stdout);
    }
    free(line);
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "stamp") == 0) return stamp();
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: loadgen N K OUT [RATE STAMPS] | loadgen stamp\n");
        return 2;
    }
    long n = atol(argv[1]), k = atol(argv[2]);
    double rate = argc == 6 ? atof(argv[4]) : 0;
    int stamps = -1;
    if (argc == 6 && rate > 0) {
        stamps = open(argv[5], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
        if (stamps < 0) return 2;
    }
    FILE *out = fopen(argv[3], "w");
    if (!out) return 2;
    long long t0 = now_ns(CLOCK_MONOTONIC);
    long started = 0, running = 0;
    while (started < n || running > 0) {
        while (started < n && running < k) {
            if (rate > 0) {
                long long due = t0 + (long long)(started * 1e9 / rate);
                long long wait = due - now_ns(CLOCK_MONOTONIC);
                if (wait > 0) {
                    struct timespec ts = {wait / 1000000000LL, wait % 1000000000LL};
                    nanosleep(&ts, NULL);
                }
            }
            pid_t pid = fork();
            if (pid == 0) {
                if (stamps >= 0) {
                    char line[64];
                    int len = snprintf(line, sizeof line, "%d %lld\n", getpid(),
                                       now_ns(CLOCK_REALTIME));
                    if (write(stamps, line, (size_t)len) < 0) _exit(255);
                }
                _exit(getpid() & 0xff);
            }
            if (pid < 0) break;
            started++;
            running++;
        }
        int status;
        pid_t done = wait(&status);
        if (done < 0) break;
        running--;
        fprintf(out, "%d %d\n", done, WEXITSTATUS(status));
    }
    fclose(out);
    return 0;
}
