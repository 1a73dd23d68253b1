/* Auto-compaction, with etcd's timing:
 *   periodic(P): sample the revision every min(P, 1h)/10; once P has passed,
 *     compact to the revision sampled P ago, then again every min(P, 1h).
 *   revision(R): every 5 minutes compact to current - R.
 * Compactions are ordinary log entries, so every member applies them. */
#include "compactor.h"

#include "base.h"
#include "pipeline.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct compactor {
  node *n;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop;
};

/* Sleeps up to ms; returns false when asked to stop. */
static bool nap(compactor *c, int64_t ms) {
  struct timespec ts = time_after_ms(CLOCK_MONOTONIC, ms);
  pthread_mutex_lock(&c->mu);
  while (!c->stop && pthread_cond_timedwait(&c->cv, &c->mu, &ts) == 0) {
  }
  bool go = !c->stop;
  pthread_mutex_unlock(&c->mu);
  return go;
}

static void compact_to(node *n, int64_t rev, const char *why) {
  log_info("starting auto %s compaction at revision %" PRId64, why, rev);
  Etcdserverpb__CompactionRequest cr = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
  cr.revision = rev;
  Synodpb__Request req = SYNODPB__REQUEST__INIT;
  req.op_case = SYNODPB__REQUEST__OP_COMPACTION;
  req.compaction = &cr;
  pipeline_propose(n->pipe, NULL, &req);
}

static void run_periodic(compactor *c) {
  int64_t period = c->n->cfg.auto_compaction_retention;
  int64_t interval = period > 3600000 ? 3600000 : period;
  int64_t retry = interval / 10 > 0 ? interval / 10 : 1;
  size_t keep = (size_t)(period / retry) + 1;
  int64_t *revs = xcalloc(keep, sizeof *revs);
  size_t n = 0;
  int64_t last = time_mono_ms(), base = period, prev = 0;
  for (;;) {
    /* revs[0] is always the revision from `period` ago */
    if (n == keep) memmove(revs, revs + 1, (--n) * sizeof *revs);
    revs[n++] = node_current_rev(c->n);
    if (!nap(c, retry)) break;
    if (time_mono_ms() - last < base) continue;
    base = interval;
    if (revs[0] > prev && revs[0] > 1) compact_to(c->n, revs[0], "periodic");
    prev = revs[0];
    last = time_mono_ms();
  }
  free(revs);
}

static void run_revision(compactor *c) {
  int64_t prev = 0;
  while (nap(c, 5 * 60 * 1000)) {
    int64_t rev = node_current_rev(c->n) - c->n->cfg.auto_compaction_retention;
    if (rev <= 0 || rev == prev) continue;
    compact_to(c->n, rev, "revision");
    prev = rev;
  }
}

static void *compactor_main(void *arg) {
  compactor *c = arg;
  pthread_setname_np(pthread_self(), "synod-compact");
  if (c->n->cfg.auto_compaction_mode == COMPACT_PERIODIC) run_periodic(c);
  else run_revision(c);
  return NULL;
}

compactor *compactor_start(node *n) {
  if (n->cfg.auto_compaction_mode == COMPACT_OFF) return NULL;
  compactor *c = xcalloc(1, sizeof *c);
  c->n = n;
  pthread_mutex_init(&c->mu, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&c->cv, &attr);
  pthread_condattr_destroy(&attr);
  pthread_create(&c->thread, NULL, compactor_main, c);
  return c;
}

void compactor_stop(compactor *c) {
  if (!c) return;
  pthread_mutex_lock(&c->mu);
  c->stop = true;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
  pthread_join(c->thread, NULL);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  free(c);
}
