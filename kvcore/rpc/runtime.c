/* The process's one completion queue and the threads that drain it, shared
 * by every server (client and peer ports) and every outgoing channel.
 *
 * Why one: gRPC C core (1.51, epoll1 poller) polls all sockets from one
 * epoll set, and whichever thread is blocked in a completion queue at the
 * moment does the polling. With a queue per server, the peer server's idle
 * thread read the client's requests and then had to wake the client
 * server's thread to run the handler: an eventfd write, an epoll wake-up
 * and a futex per request (seen with strace; docs/performance.md). With
 * one queue, the thread that reads a request runs its handler.
 *
 * Reference counted: the first user creates the queue, the last one shuts
 * it down, drains it and joins the threads. A user that asks for more
 * threads than are running gets more (tests ask for two). */
#include "base.h"
#include "rpc_internal.h"

enum { MAX_THREADS = 16 };

static pthread_mutex_t rt_mu = PTHREAD_MUTEX_INITIALIZER;
static int rt_users;
static grpc_completion_queue *rt_cq;
static pthread_t rt_threads[MAX_THREADS];
static int rt_n_threads;

static _Thread_local bool on_cq_thread;

bool rpc_on_cq_thread(void) { return on_cq_thread; }

static void *cq_thread(void *arg) {
  grpc_completion_queue *cq = arg;
  pthread_setname_np(pthread_self(), "synod-grpc");
  on_cq_thread = true;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    rpc_tag *tag = ev.tag;
    tag->done(tag, ev.success != 0);
  }
  return NULL;
}

grpc_completion_queue *rpc_runtime_ref(int threads) {
  if (threads < 1) threads = 1;
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  pthread_mutex_lock(&rt_mu);
  if (rt_users++ == 0) rt_cq = grpc_completion_queue_create_for_next(NULL);
  while (rt_n_threads < threads) {
    pthread_create(&rt_threads[rt_n_threads], NULL, cq_thread, rt_cq);
    rt_n_threads++;
  }
  grpc_completion_queue *cq = rt_cq;
  pthread_mutex_unlock(&rt_mu);
  return cq;
}

void rpc_runtime_unref(void) {
  pthread_mutex_lock(&rt_mu);
  if (--rt_users == 0) {
    /* Every user has released everything that could complete: the queue
     * drains to GRPC_QUEUE_SHUTDOWN in its threads. */
    grpc_completion_queue_shutdown(rt_cq);
    for (int i = 0; i < rt_n_threads; i++) pthread_join(rt_threads[i], NULL);
    rt_n_threads = 0;
    grpc_completion_queue_destroy(rt_cq);
    rt_cq = NULL;
  }
  pthread_mutex_unlock(&rt_mu);
}
