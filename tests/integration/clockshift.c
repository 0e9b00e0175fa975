/* LD_PRELOAD shim: this process's wall clock runs ahead (or behind) by the number of seconds written
 * in the file named by CLOCKSHIFT_FILE, re-read once a second, so a test can skew it and step it
 * while the process runs. The monotonic clocks stay true, as they do when NTP steps a real clock.
 * (libfaketime 0.9.10, Debian's, breaks Python's time.sleep when monotonic time is left alone.) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static const char *shift_file;
static long shift_seconds;
static time_t shift_read_at = -1;

__attribute__((constructor)) static void init(void) {
    real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    shift_file = getenv("CLOCKSHIFT_FILE");
}

static long shift(void) {
    struct timespec now;
    real_clock_gettime(CLOCK_MONOTONIC, &now);
    if (shift_file && now.tv_sec != shift_read_at) {
        shift_read_at = now.tv_sec;
        FILE *file = fopen(shift_file, "r");
        long seconds;
        if (file) {
            if (fscanf(file, "%ld", &seconds) == 1) shift_seconds = seconds;
            fclose(file);
        }
    }
    return shift_seconds;
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    int result = real_clock_gettime(clock, ts);
    if (result == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) ts->tv_sec += shift();
    return result;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    struct timespec now;
    (void)tz;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0) return -1;
    tv->tv_sec = now.tv_sec;
    tv->tv_usec = now.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (out) *out = now.tv_sec;
    return now.tv_sec;
}
