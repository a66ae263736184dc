/* logreg.c - Newton/IRLS with step halving; see logreg.h. */
#include "logreg.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_ITERATIONS = 100 };

double st_sigmoid(double z)
{
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

void st_logreg_init(st_logreg *model, int p)
{
    memset(model, 0, sizeof *model);
    model->p = p;
    model->coef = st_xcalloc((size_t)p, sizeof(double));
    model->mean = st_xcalloc((size_t)p, sizeof(double));
    model->scale = st_xcalloc((size_t)p, sizeof(double));
}

void st_logreg_release(st_logreg *model)
{
    free(model->coef);
    free(model->mean);
    free(model->scale);
    memset(model, 0, sizeof *model);
}

/* In-place Cholesky factorisation of the k x k matrix a (lower triangle
 * used) and solve of a x = b into b. Returns -1 if a is not positive
 * definite. */
static int cholesky_solve(double *a, double *b, int k)
{
    for (int j = 0; j < k; j++) {
        double d = a[j * k + j];
        for (int m = 0; m < j; m++)
            d -= a[j * k + m] * a[j * k + m];
        if (!(d > 1e-300)) return -1;
        d = sqrt(d);
        a[j * k + j] = d;
        for (int i = j + 1; i < k; i++) {
            double s = a[i * k + j];
            for (int m = 0; m < j; m++)
                s -= a[i * k + m] * a[j * k + m];
            a[i * k + j] = s / d;
        }
    }
    for (int i = 0; i < k; i++) { /* L y = b */
        double s = b[i];
        for (int m = 0; m < i; m++)
            s -= a[i * k + m] * b[m];
        b[i] = s / a[i * k + i];
    }
    for (int i = k - 1; i >= 0; i--) { /* L^T x = y */
        double s = b[i];
        for (int m = i + 1; m < k; m++)
            s -= a[m * k + i] * b[m];
        b[i] = s / a[i * k + i];
    }
    return 0;
}

/* The data pass is split into a fixed number of chunks whose partial sums
 * are added in chunk order, so the result does not depend on how many
 * threads ran them: same input, same bits, on any machine. */
enum { NCHUNKS = 8 };

/* The Hessian sum_i w_i z_i z_i^T is the bulk of the work: k(k+1)/2
 * multiply-adds per row. A rank-1 update per row loads and stores every
 * entry of the triangle for 2 flops each, so it runs at the speed of the
 * stores. Instead the rows go through in blocks of BLOCK, and the triangle
 * in TILE x TILE tiles that stay in registers while a whole block is added
 * into them; the inner TILE-wide loops vectorise (2 doubles a lane on
 * baseline x86-64). Each entry still gets its rows added one by one in row
 * order, exactly as a rank-1 update would, so the blocking changes no bit.
 * Rows are padded with zero columns to a multiple of TILE (kpad). */
enum { BLOCK = 32, TILE = 4 };

typedef struct pass {
    const double *x, *y, *beta;
    const double *mean, *inv_scale; /* [k - 1] standardisation */
    size_t n;
    int k, kpad;
    int want_derivatives;
    double f[NCHUNKS];
    double *grad; /* [NCHUNKS][kpad] */
    double *hess; /* [NCHUNKS][kpad][kpad], the tiles on and below the diagonal */
} pass;

typedef struct worker {
    pass *pass;
    int first, stride; /* chunks first, first + stride, ... */
} worker;

/* The block kernel below is where the fit spends its time. It works on
 * TILE = 4 doubles at a time through GCC's vector extension (also Clang's):
 * at baseline x86-64 each operation becomes two SSE2 instructions, and where
 * the CPU has AVX a second copy of the kernel, chosen once at load time (an
 * ifunc), does them in one. Plain loops left this to the vectoriser, which
 * at -O3 shuffled every row's tile into reverse lane order and at -O2 did
 * not vectorise it at all. A lane runs the same IEEE multiply and add on
 * entries that are independent anyway, and AVX alone has no fused
 * multiply-add to contract them into, so both copies give the same bits. */
typedef double vec4 __attribute__((vector_size(TILE * sizeof(double))));

#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define KERNEL_CLONES __attribute__((target_clones("avx", "default")))
#endif
#endif
#ifndef KERNEL_CLONES
#define KERNEL_CLONES
#endif

/* Adds the block's rows to the gradient and the Hessian:
 *     grad += sum over the nb rows of res[r] z[r]
 *     hess += sum over the nb rows of (w[r] z[r][a]) z[r][b]
 * for the tiles of hess on or below the diagonal. z and the scratch wz are
 * nb x kpad, grad kpad, hess kpad x kpad. A tile of running sums stays in
 * registers for the whole block (a running sum in memory makes each row
 * wait for the previous row's store), and every entry adds its rows in row
 * order. Loads and stores go through memcpy: the rows are not aligned. */
KERNEL_CLONES
static void add_block_derivatives(double *grad, double *hess, const double *z, const double *res,
                                  const double *w, int nb, int kpad, double *wz)
{
    for (int a0 = 0; a0 < kpad; a0 += TILE) {
        vec4 acc, zr;
        memcpy(&acc, grad + a0, sizeof acc);
        for (int r = 0; r < nb; r++) {
            memcpy(&zr, z + r * kpad + a0, sizeof zr);
            acc += res[r] * zr;
        }
        memcpy(grad + a0, &acc, sizeof acc);
    }
    for (int r = 0; r < nb; r++)
        for (int a0 = 0; a0 < kpad; a0 += TILE) {
            vec4 zr;
            memcpy(&zr, z + r * kpad + a0, sizeof zr);
            zr *= w[r];
            memcpy(wz + r * kpad + a0, &zr, sizeof zr);
        }
    for (int a0 = 0; a0 < kpad; a0 += TILE)
        for (int b0 = 0; b0 <= a0; b0 += TILE) {
            vec4 acc[TILE], zr;
            for (int i = 0; i < TILE; i++)
                memcpy(&acc[i], hess + (a0 + i) * kpad + b0, sizeof acc[i]);
            for (int r = 0; r < nb; r++) {
                const double *wr = wz + r * kpad + a0;
                memcpy(&zr, z + r * kpad + b0, sizeof zr);
                for (int i = 0; i < TILE; i++)
                    acc[i] += wr[i] * zr;
            }
            for (int i = 0; i < TILE; i++)
                memcpy(hess + (a0 + i) * kpad + b0, &acc[i], sizeof acc[i]);
        }
}

/* z[r] = (1, standardised x of row i0 + r, zero padding) for nb rows. */
static void standardise_block(const pass *ps, size_t i0, int nb, double *z)
{
    int k = ps->k, kpad = ps->kpad;
    for (int r = 0; r < nb; r++) {
        const double *xi = ps->x + (i0 + (size_t)r) * (size_t)(k - 1);
        double *row = z + r * kpad;
        row[0] = 1.0;
        for (int j = 1; j < k; j++)
            row[j] = (xi[j - 1] - ps->mean[j - 1]) * ps->inv_scale[j - 1];
        for (int j = k; j < kpad; j++)
            row[j] = 0;
    }
}

/* eta[r] = z[r] . beta, summed over j in order for each row but a column at
 * a time across the block: the adds of one row form a chain that would
 * otherwise stall on the adder's latency at every step. */
static void linear_predictor(const pass *ps, const double *z, int nb, double *eta)
{
    for (int r = 0; r < nb; r++)
        eta[r] = 0;
    for (int j = 0; j < ps->k; j++)
        for (int r = 0; r < nb; r++)
            eta[r] += z[r * ps->kpad + j] * ps->beta[j];
}

static void run_chunk(pass *ps, int c)
{
    int kpad = ps->kpad;
    size_t lo = ps->n * (size_t)c / NCHUNKS, hi = ps->n * (size_t)(c + 1) / NCHUNKS;
    double *grad = ps->grad + (size_t)c * (size_t)kpad;
    double *hess = ps->hess + (size_t)c * (size_t)kpad * (size_t)kpad;
    double f = 0;
    /* The standardised rows are made on the fly, a block at a time: cheaper
     * than reading (and first faulting in) a standardised copy of the whole
     * matrix. */
    double *z = st_xmalloc((size_t)BLOCK * (size_t)kpad * sizeof *z);
    double *wz = st_xmalloc((size_t)BLOCK * (size_t)kpad * sizeof *wz);
    double eta[BLOCK], res[BLOCK], w[BLOCK];
    for (size_t i0 = lo; i0 < hi; i0 += BLOCK) {
        int nb = hi - i0 < BLOCK ? (int)(hi - i0) : BLOCK;
        const double *yb = ps->y + i0;
        standardise_block(ps, i0, nb, z);
        linear_predictor(ps, z, nb, eta);
        /* The loss of a row is log(1 + e^eta) - y eta = max(eta, 0) + log(1 + e)
         * - y eta with e = e^-|eta|, and one exp serves it and mu. The logs
         * of a block are taken as one log of the product of the 1 + e, each
         * in (1, 2] so that BLOCK of them cannot overflow: a log per row
         * was a fifth of the fit. The product's rounding (BLOCK ulps) costs
         * about 1e-14 per block, far below the rounding of f itself. */
        double loss = 0, product = 1;
        for (int r = 0; r < nb; r++) {
            double e = exp(-fabs(eta[r]));
            loss += (eta[r] > 0 ? eta[r] : 0) - yb[r] * eta[r];
            product *= 1 + e;
            double mu = eta[r] >= 0 ? 1 / (1 + e) : e / (1 + e);
            res[r] = mu - yb[r];
            w[r] = mu * (1 - mu);
        }
        f += loss + log(product);
        if (ps->want_derivatives) add_block_derivatives(grad, hess, z, res, w, nb, kpad, wz);
    }
    ps->f[c] = f;
    free(z);
    free(wz);
}

static void *run_worker(void *arg)
{
    worker *w = arg;
    for (int c = w->first; c < NCHUNKS; c += w->stride)
        run_chunk(w->pass, c);
    return NULL;
}

/* One pass over the data at beta: returns the penalised objective and, when
 * grad and hess are not NULL, fills the gradient and the lower triangle of
 * the Hessian. Fusing the three keeps a Newton step at one read of z. */
static double evaluate(const double *x, const double *y, size_t n, int k, const double *mean,
                       const double *inv_scale, const double *beta, double l2, int nthreads,
                       double *grad, double *hess)
{
    int kpad = (k + TILE - 1) / TILE * TILE;
    size_t kk = (size_t)kpad * (size_t)kpad;
    pass ps = {x,
               y,
               beta,
               mean,
               inv_scale,
               n,
               k,
               kpad,
               grad != NULL,
               {0},
               st_xcalloc(NCHUNKS * (size_t)kpad, sizeof(double)),
               st_xcalloc(NCHUNKS * kk, sizeof(double))};
    pthread_t tid[NCHUNKS];
    worker workers[NCHUNKS];
    int started = 0;
    for (int t = 1; t < nthreads; t++) {
        workers[t] = (worker){&ps, t, nthreads};
        if (pthread_create(&tid[t], NULL, run_worker, &workers[t]) != 0)
            break; /* run the rest on this thread */
        started = t;
    }
    /* This thread takes chunk 0 and every chunk no started thread owns. */
    for (int c = 0; c < NCHUNKS; c++)
        if (c % nthreads == 0 || c % nthreads > started) run_chunk(&ps, c);
    for (int t = 1; t <= started; t++)
        pthread_join(tid[t], NULL);

    double f = 0;
    if (grad) {
        memset(grad, 0, (size_t)k * sizeof *grad);
        memset(hess, 0, (size_t)k * (size_t)k * sizeof *hess);
    }
    for (int c = 0; c < NCHUNKS; c++) {
        f += ps.f[c];
        for (int a = 0; grad && a < k; a++) {
            grad[a] += ps.grad[(size_t)c * (size_t)kpad + (size_t)a];
            for (int b = 0; b <= a; b++)
                hess[a * k + b] += ps.hess[(size_t)c * kk + (size_t)(a * kpad + b)];
        }
    }
    free(ps.grad);
    free(ps.hess);
    for (int j = 1; j < k; j++) {
        f += 0.5 * l2 * beta[j] * beta[j];
        if (grad) {
            grad[j] += l2 * beta[j];
            hess[j * k + j] += l2;
        }
    }
    return f;
}

int st_logreg_fit(const double *x, const double *y, size_t n, int p, double l2, st_logreg *model,
                  st_err *err)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = cpus < 1 ? 1 : cpus > NCHUNKS ? NCHUNKS : (int)cpus;
    if (n < 10000) threads = 1; /* not worth a thread */
    return st_logreg_fit_threads(x, y, n, p, l2, threads, model, err);
}

int st_logreg_fit_threads(const double *x, const double *y, size_t n, int p, double l2,
                          int threads, st_logreg *model, st_err *err)
{
    if (threads > NCHUNKS) threads = NCHUNKS; /* one chunk is the most a thread can take */
    if (threads < 1) threads = 1;
    if (n == 0) return st_err_set(err, "no training rows");
    size_t pos = 0;
    for (size_t i = 0; i < n; i++)
        pos += y[i] > 0.5;
    if (pos == 0 || pos == n)
        return st_err_set(err, "labels are all %d: nothing to learn", pos ? 1 : 0);

    st_logreg_init(model, p);
    /* Mean and standard deviation, row by row (a column-wise walk over a
     * row-major matrix would read all of it once per feature). */
    double *dev = st_xcalloc((size_t)p, sizeof *dev);
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < p; j++)
            model->mean[j] += x[i * (size_t)p + (size_t)j];
    for (int j = 0; j < p; j++)
        model->mean[j] /= (double)n;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < p; j++) {
            double d = x[i * (size_t)p + (size_t)j] - model->mean[j];
            dev[j] += d * d;
        }
    for (int j = 0; j < p; j++) {
        double sd = sqrt(dev[j] / (double)n);
        model->scale[j] = sd > 0 ? sd : 1.0;
    }
    free(dev);
    /* Parameters: beta[0] the intercept, beta[1..p] on standardised x. */
    int k = p + 1;
    double *inv_scale = st_xmalloc((size_t)p * sizeof *inv_scale);
    for (int j = 0; j < p; j++)
        inv_scale[j] = 1.0 / model->scale[j];

    double *beta = st_xcalloc((size_t)k, sizeof *beta);
    double *step = st_xmalloc((size_t)k * sizeof *step);
    double *grad = st_xmalloc((size_t)k * sizeof *grad);
    double *hess = st_xmalloc((size_t)k * (size_t)k * sizeof *hess);
    /* Start from the base rate so the first step is already sensible. */
    beta[0] = log((double)pos / (double)(n - pos));
    double f = evaluate(x, y, n, k, model->mean, inv_scale, beta, l2, threads, grad, hess);
    int rc = -1, it;
    for (it = 1; it <= MAX_ITERATIONS; it++) {
        memcpy(step, grad, (size_t)k * sizeof *step);
        if (cholesky_solve(hess, step, k) < 0) {
            st_err_set(err, "hessian is not positive definite (a constant or collinear "
                            "feature? try --l2 > 0)");
            goto done;
        }
        /* The Newton decrement g.H^-1.g / 2 estimates how far f is above its
         * minimum. Newton converges quadratically (on the flight data the
         * decrement per row goes 4e-2, 1e-3, 2e-6, 2e-11), so once it is
         * below 1e-5 per row the step about to be taken lands within ~1e-10
         * per row of the optimum and needs no further derivative pass. */
        double decrement = 0;
        for (int j = 0; j < k; j++)
            decrement += grad[j] * step[j];
        /* Step, halving it while the objective rises (rare: the objective is
         * convex and the start is close); the accepted point's pass also
         * yields the next gradient and Hessian. */
        double t = 1.0, fnew = f;
        for (int h = 0; h < 40; h++, t /= 2) {
            for (int j = 0; j < k; j++)
                beta[j] -= t * step[j];
            int last = decrement / 2 < 1e-5 * (double)n;
            fnew = evaluate(x, y, n, k, model->mean, inv_scale, beta, l2, threads,
                            last ? NULL : grad, last ? NULL : hess);
            if (fnew <= f || h == 39) {
                rc = last ? 0 : -1;
                break;
            }
            for (int j = 0; j < k; j++) /* undo, try half the step */
                beta[j] += t * step[j];
        }
        if (fnew > f) {
            st_err_set(err, "no Newton step decreases the objective");
            goto done;
        }
        f = fnew;
        if (rc == 0) break;
    }
    if (rc < 0) {
        st_err_set(err, "did not converge in %d Newton iterations", MAX_ITERATIONS);
        goto done;
    }
    model->iterations = it;
    model->objective = f;
    model->intercept = beta[0];
    for (int j = 0; j < p; j++) {
        model->coef[j] = beta[j + 1] / model->scale[j];
        model->intercept -= model->coef[j] * model->mean[j];
    }
done:
    free(inv_scale);
    free(beta);
    free(step);
    free(grad);
    free(hess);
    if (rc < 0) st_logreg_release(model);
    return rc;
}

double st_logreg_predict(const st_logreg *model, const double *row)
{
    double eta = model->intercept;
    for (int j = 0; j < model->p; j++)
        eta += model->coef[j] * row[j];
    return st_sigmoid(eta);
}
