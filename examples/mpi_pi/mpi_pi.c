/*
 * mpi_pi: computes pi as the integral of 4 / (1 + x^2) over [0, 1] with the midpoint rule,
 * shared out by a master rank to worker ranks in chunks on demand (dynamic master/worker).
 *
 * Rank 0 is the master: it hands the next chunk of intervals to whichever worker reports back,
 * adds up the partial sums, and writes the result as JSON. Ranks 1..n-1 are the workers. Run on
 * one rank, the master does all the work itself.
 *
 *   mpi_pi [--scale S] [--chunk N] [--out PATH]
 *
 * --scale S   S * 2e10 intervals (work grows like S)
 * --chunk N   intervals per unit of work handed out (default 1e6, a few milliseconds of work)
 * --out PATH  where the master writes its JSON result (default out/pi.json)
 *
 * The midpoint rule's error for this integrand is below 1 / (3 n^2), so the result is checkable
 * against the true value of pi.
 */
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define INTERVALS_AT_FULL_SCALE 2.0e10
#define TAG_WORK 1
#define TAG_RESULT 2
#define TAG_STOP 3

static const double PI_TRUE = 3.14159265358979323846;

/* Sum of f(x) at the midpoints of intervals [first, last) of width h. */
static double partial_sum(long long first, long long last, double h)
{
    double sum = 0.0;
    for (long long i = first; i < last; i++) {
        double x = h * ((double)i + 0.5);
        sum += 4.0 / (1.0 + x * x);
    }
    return sum;
}

static void chunk_bounds(long long chunk, long long chunks, long long n, long long *first, long long *last)
{
    *first = n * chunk / chunks;
    *last = n * (chunk + 1) / chunks;
}

/* Creates the parent folders of path, like mkdir -p on its dirname. */
static int make_parents(const char *path)
{
    char buffer[4096];
    if (strlen(path) >= sizeof buffer)
        return -1;
    strcpy(buffer, path);
    for (char *p = buffer + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buffer, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

/* Writes the result to path.partial, then renames it: the output is whole or absent. */
static int write_result(const char *path, double pi, long long n, long long chunks, int ranks,
                        const long long *per_rank, double seconds)
{
    char partial[4096];
    if (make_parents(path) != 0 || snprintf(partial, sizeof partial, "%s.partial", path) >= (int)sizeof partial)
        return -1;
    FILE *out = fopen(partial, "w");
    if (!out)
        return -1;
    fprintf(out, "{\n  \"app\": \"mpi_pi\",\n  \"pi\": %.17g,\n  \"error\": %.3e,\n", pi, pi - PI_TRUE);
    fprintf(out, "  \"midpoint_error_bound\": %.3e,\n", 1.0 / (3.0 * (double)n * (double)n));
    fprintf(out, "  \"intervals\": %lld,\n  \"chunks\": %lld,\n  \"ranks\": %d,\n", n, chunks, ranks);
    fprintf(out, "  \"chunks_per_rank\": [");
    for (int r = 0; r < ranks; r++)
        fprintf(out, "%s%lld", r ? ", " : "", per_rank[r]);
    fprintf(out, "],\n  \"seconds\": %.4f\n}\n", seconds);
    if (fclose(out) != 0)
        return -1;
    return rename(partial, path);
}

/* Waits for a message without spinning: the master shares its host with workers. */
static void gentle_recv(double *value, MPI_Status *status)
{
    MPI_Request request;
    int done = 0;
    struct timespec pause = {0, 50000};
    MPI_Irecv(value, 1, MPI_DOUBLE, MPI_ANY_SOURCE, TAG_RESULT, MPI_COMM_WORLD, &request);
    for (;;) {
        MPI_Test(&request, &done, status);
        if (done)
            return;
        nanosleep(&pause, NULL);
    }
}

static double master(int ranks, long long n, long long chunks, long long *per_rank)
{
    double h = 1.0 / (double)n;
    double total = 0.0;
    if (ranks == 1) {
        for (long long c = 0; c < chunks; c++) {
            long long first, last;
            chunk_bounds(c, chunks, n, &first, &last);
            total += partial_sum(first, last, h);
        }
        per_rank[0] = chunks;
        return total * h;
    }
    long long next = 0;
    int busy = 0;
    for (int r = 1; r < ranks; r++) {
        if (next < chunks) {
            MPI_Send(&next, 1, MPI_LONG_LONG, r, TAG_WORK, MPI_COMM_WORLD);
            next++;
            busy++;
        } else {
            MPI_Send(&next, 1, MPI_LONG_LONG, r, TAG_STOP, MPI_COMM_WORLD);
        }
    }
    while (busy > 0) {
        double part;
        MPI_Status status;
        gentle_recv(&part, &status);
        total += part;
        per_rank[status.MPI_SOURCE]++;
        busy--;
        if (next < chunks) {
            MPI_Send(&next, 1, MPI_LONG_LONG, status.MPI_SOURCE, TAG_WORK, MPI_COMM_WORLD);
            next++;
            busy++;
        } else {
            MPI_Send(&next, 1, MPI_LONG_LONG, status.MPI_SOURCE, TAG_STOP, MPI_COMM_WORLD);
        }
    }
    return total * h;
}

static void worker(long long n, long long chunks)
{
    double h = 1.0 / (double)n;
    for (;;) {
        long long chunk;
        MPI_Status status;
        MPI_Recv(&chunk, 1, MPI_LONG_LONG, 0, MPI_ANY_TAG, MPI_COMM_WORLD, &status);
        if (status.MPI_TAG == TAG_STOP)
            return;
        long long first, last;
        chunk_bounds(chunk, chunks, n, &first, &last);
        double part = partial_sum(first, last, h);
        MPI_Send(&part, 1, MPI_DOUBLE, 0, TAG_RESULT, MPI_COMM_WORLD);
    }
}

int main(int argc, char **argv)
{
    double scale = 1.0;
    long long chunk = 1000000;
    const char *out_path = "out/pi.json";
    int rank, ranks;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) {
            scale = atof(argv[++i]);
        } else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc) {
            chunk = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out_path = argv[++i];
        } else {
            if (rank == 0)
                fprintf(stderr, "mpi_pi: unknown argument %s; usage: mpi_pi [--scale S] [--chunk N] [--out PATH]\n", argv[i]);
            MPI_Finalize();
            return 2;
        }
    }
    long long n = llround(scale * INTERVALS_AT_FULL_SCALE);
    if (!(scale > 0) || chunk < 1 || n < 1) {
        if (rank == 0)
            fprintf(stderr, "mpi_pi: --scale and --chunk must be positive\n");
        MPI_Finalize();
        return 2;
    }

    long long chunks = (n + chunk - 1) / chunk;
    int status = 0;
    if (rank == 0) {
        long long *per_rank = calloc((size_t)ranks, sizeof *per_rank);
        double started = MPI_Wtime();
        double pi = master(ranks, n, chunks, per_rank);
        double seconds = MPI_Wtime() - started;
        if (write_result(out_path, pi, n, chunks, ranks, per_rank, seconds) != 0) {
            fprintf(stderr, "mpi_pi: cannot write %s: %s\n", out_path, strerror(errno));
            status = 1;
        } else {
            printf("pi = %.15f (error %.2e, %lld intervals, %d ranks, %.2f s) -> %s\n", pi, pi - PI_TRUE, n, ranks,
                   seconds, out_path);
        }
        free(per_rank);
    } else {
        worker(n, chunks);
    }
    MPI_Finalize();
    return status;
}
