/* Load generator for bench/linux_burst.sh: forks N children, at most K
 * outstanding, each exiting at once with status (pid & 0xff); reaps them and
 * writes "pid status" per child to the output file, so every exit can be
 * checked exactly. Usage: loadgen N K OUT */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: loadgen N K OUT\n");
        return 2;
    }
    long n = atol(argv[1]), k = atol(argv[2]);
    FILE *out = fopen(argv[3], "w");
    if (!out) return 2;
    long started = 0, running = 0;
    while (started < n || running > 0) {
        while (started < n && running < k) {
            pid_t pid = fork();
            if (pid == 0) _exit(getpid() & 0xff);
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
