/*
 * Reference for bench/ports_scan_bench.ts: the bind test over a port range as a plain C loop
 * (socket + SO_REUSEADDR + bind on 0.0.0.0 + close per port), timed inside the process so the
 * figure excludes process start-up.
 *
 * Usage: ports_scan_reference START END [ROUNDS]
 * Prints one line per round: "<milliseconds> <available ports>".
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s START END [ROUNDS]\n", argv[0]);
    return 2;
  }
  int start = atoi(argv[1]), end = atoi(argv[2]), rounds = argc > 3 ? atoi(argv[3]) : 1;
  for (int r = 0; r < rounds; r++) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int available = 0;
    for (int port = start; port <= end; port++) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      if (fd < 0) {
        perror("socket");
        return 1;
      }
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      struct sockaddr_in addr;
      memset(&addr, 0, sizeof addr);
      addr.sin_family = AF_INET;
      addr.sin_port = htons((unsigned short)port);
      addr.sin_addr.s_addr = htonl(INADDR_ANY);
      if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0) available++;
      close(fd);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("%.3f %d\n", ms, available);
  }
  return 0;
}
