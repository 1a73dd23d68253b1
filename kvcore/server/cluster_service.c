/* etcdserverpb.Cluster: the member list and membership changes, with etcd's
 * checks and errors. A change is a Raft conf-change entry whose context says
 * who the member is; the reply is sent once it has been applied here. Also
 * the peer-facing Members call (for members joining) and promotion
 * forwarded to the leader, which alone knows whether a learner caught up. */
#include "errors.h"
#include "membership.h"
#include "node.h"
#include "pipeline.h"
#include "raftnode.h"
#include "reads.h"
#include "services.h"
#include "transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* etcd 3.5 allows one learner at a time. */
enum { MAX_LEARNERS = 1 };

static Etcdserverpb__Member **members_msg(arena *a, const member_list *l) {
  Etcdserverpb__Member **v = arena_alloc(a, (l->n ? l->n : 1) * sizeof *v);
  for (size_t i = 0; i < l->n; i++) {
    Etcdserverpb__Member *m = arena_alloc(a, sizeof *m);
    etcdserverpb__member__init(m);
    m->id = l->v[i].id;
    m->name = l->v[i].name;
    m->peerurls = l->v[i].peer_urls.v;
    m->n_peerurls = l->v[i].peer_urls.n;
    m->clienturls = l->v[i].client_urls.v;
    m->n_clienturls = l->v[i].client_urls.n;
    m->islearner = l->v[i].is_learner;
    v[i] = m;
  }
  return v;
}

static Etcdserverpb__ResponseHeader *header(node *n, arena *a) {
  Etcdserverpb__ResponseHeader *h = arena_alloc(a, sizeof *h);
  etcdserverpb__response_header__init(h);
  node_fill_header(n, h);
  h->revision = node_current_rev(n);
  return h;
}

/* ---------------------------------------------------------------- MemberList */

static void list_now(node *n, rpc_call *call, const ProtobufCMessage *m) {
  (void)m;
  arena *a = arena_new();
  member_list l;
  member_cache_copy(&n->members, &l, NULL);
  Etcdserverpb__MemberListResponse resp = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
  resp.header = header(n, a);
  resp.members = members_msg(a, &l);
  resp.n_members = l.n;
  rpc_reply(call, &resp.base);
  member_list_free(&l);
  arena_free(a);
}

static void member_list_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  node *n = ctx;
  const Etcdserverpb__MemberListRequest *r = (const Etcdserverpb__MemberListRequest *)m;
  if (r->linearizable && !node_local_reads_ok(n)) return reads_submit(n->reads, call, m, list_now);
  list_now(n, call, m);
}

/* ---------------------------------------------------------------- changes */

typedef enum { CHANGE_ADD, CHANGE_REMOVE, CHANGE_UPDATE, CHANGE_PROMOTE } change_kind;

typedef struct {
  node *n;
  rpc_call *call;
  change_kind kind;
  uint64_t id;
} change;

static void change_done(void *arg, bool applied) {
  change *c = arg;
  node *n = c->n;
  if (!applied) {
    rpc_fail_with(c->call, raftnode_lead(n->rn) ? &ERR_TIMEOUT : &ERR_NO_LEADER);
    free(c);
    return;
  }
  arena *a = arena_new();
  member_list l;
  member_cache_copy(&n->members, &l, NULL);
  Etcdserverpb__ResponseHeader *h = header(n, a);
  Etcdserverpb__Member **ms = members_msg(a, &l);
  switch (c->kind) {
    case CHANGE_ADD: {
      Etcdserverpb__MemberAddResponse r = ETCDSERVERPB__MEMBER_ADD_RESPONSE__INIT;
      r.header = h;
      r.members = ms;
      r.n_members = l.n;
      for (size_t i = 0; i < l.n; i++)
        if (ms[i]->id == c->id) r.member = ms[i];
      rpc_reply(c->call, &r.base);
      break;
    }
    case CHANGE_REMOVE: {
      Etcdserverpb__MemberRemoveResponse r = ETCDSERVERPB__MEMBER_REMOVE_RESPONSE__INIT;
      r.header = h, r.members = ms, r.n_members = l.n;
      rpc_reply(c->call, &r.base);
      break;
    }
    case CHANGE_UPDATE: {
      Etcdserverpb__MemberUpdateResponse r = ETCDSERVERPB__MEMBER_UPDATE_RESPONSE__INIT;
      r.header = h, r.members = ms, r.n_members = l.n;
      rpc_reply(c->call, &r.base);
      break;
    }
    case CHANGE_PROMOTE: {
      Etcdserverpb__MemberPromoteResponse r = ETCDSERVERPB__MEMBER_PROMOTE_RESPONSE__INIT;
      r.header = h, r.members = ms, r.n_members = l.n;
      rpc_reply(c->call, &r.base);
      break;
    }
  }
  member_list_free(&l);
  arena_free(a);
  free(c);
}

static void propose_change(node *n, rpc_call *call, change_kind kind, uint8_t cc_type, uint64_t id,
                           const strlist *urls, bool learner) {
  buf ctx = {0};
  if (urls) members_encode_context(id, urls, learner, "", &ctx);
  raft_conf_change cc = {.type = cc_type, .node_id = id, .ctx = ctx.data, .ctx_len = ctx.len};
  change *c = xmalloc(sizeof *c);
  *c = (change){n, call, kind, id};
  pipeline_propose_conf_change(n->pipe, &cc, change_done, c);
  buf_free(&ctx);
}

static bool urls_valid(char **urls, size_t n) {
  if (n == 0) return false;
  for (size_t i = 0; i < n; i++) {
    char hp[512];
    bool tls;
    if (url_host_port(urls[i], hp, sizeof hp, &tls) < 0) return false;
  }
  return true;
}

/* Is one of urls already some other member's peer URL? */
static bool urls_taken(const member_list *l, char **urls, size_t n, uint64_t except) {
  for (size_t i = 0; i < l->n; i++) {
    if (l->v[i].id == except) continue;
    for (size_t k = 0; k < l->v[i].peer_urls.n; k++)
      for (size_t j = 0; j < n; j++)
        if (strcmp(l->v[i].peer_urls.v[k], urls[j]) == 0) return true;
  }
  return false;
}

/* --strict-reconfig-check: after the change, enough started voters must
 * remain for a quorum (etcd's isReadyTo{Add,Remove}VotingMember). A member
 * counts as started once it has published its name. */
static bool enough_started(const member_list *l, int delta_voters, uint64_t removing) {
  int voters = delta_voters > 0 ? delta_voters : 0, started = 0;
  for (size_t i = 0; i < l->n; i++) {
    if (l->v[i].is_learner || l->v[i].id == removing) continue;
    voters++;
    if (l->v[i].name[0]) started++;
  }
  return started >= voters / 2 + 1;
}

static void member_add_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *msg) {
  node *n = ctx;
  const Etcdserverpb__MemberAddRequest *r = (const Etcdserverpb__MemberAddRequest *)msg;
  if (!urls_valid(r->peerurls, r->n_peerurls)) return rpc_fail_with(call, &ERR_MEMBER_BAD_URLS);
  member_list l;
  member_cache_copy(&n->members, &l, NULL);
  const rpc_error *e = NULL;
  size_t learners = 0;
  for (size_t i = 0; i < l.n; i++) learners += l.v[i].is_learner;
  strlist urls = {r->peerurls, r->n_peerurls};
  int64_t now = (int64_t)time(NULL);
  uint64_t id = members_compute_id(&urls, "", &now);
  if (urls_taken(&l, r->peerurls, r->n_peerurls, 0)) e = &ERR_PEER_URL_EXIST;
  else if (member_list_find(&l, id)) e = &ERR_MEMBER_EXIST;
  else if (r->islearner && learners >= MAX_LEARNERS) e = &ERR_TOO_MANY_LEARNERS;
  else if (!r->islearner && n->cfg.strict_reconfig_check && !enough_started(&l, 1, 0)) e = &ERR_MEMBER_NOT_ENOUGH_STARTED;
  member_list_free(&l);
  if (e) return rpc_fail_with(call, e);
  propose_change(n, call, CHANGE_ADD, r->islearner ? RAFT_CC_ADD_LEARNER : RAFT_CC_ADD_VOTER, id, &urls, r->islearner);
}

static void member_remove_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *msg) {
  node *n = ctx;
  const Etcdserverpb__MemberRemoveRequest *r = (const Etcdserverpb__MemberRemoveRequest *)msg;
  member_list l;
  member_cache_copy(&n->members, &l, NULL);
  const member *m = member_list_find(&l, r->id);
  const rpc_error *e = NULL;
  if (!m) e = &ERR_MEMBER_NOT_FOUND;
  else if (!m->is_learner && n->cfg.strict_reconfig_check && !enough_started(&l, 0, r->id))
    e = &ERR_MEMBER_NOT_ENOUGH_STARTED;
  member_list_free(&l);
  if (e) return rpc_fail_with(call, e);
  propose_change(n, call, CHANGE_REMOVE, RAFT_CC_REMOVE, r->id, NULL, false);
}

static void member_update_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *msg) {
  node *n = ctx;
  const Etcdserverpb__MemberUpdateRequest *r = (const Etcdserverpb__MemberUpdateRequest *)msg;
  if (!urls_valid(r->peerurls, r->n_peerurls)) return rpc_fail_with(call, &ERR_MEMBER_BAD_URLS);
  member_list l;
  member_cache_copy(&n->members, &l, NULL);
  const member *m = member_list_find(&l, r->id);
  const rpc_error *e = NULL;
  bool learner = m && m->is_learner;
  if (!m) e = &ERR_MEMBER_NOT_FOUND;
  else if (urls_taken(&l, r->peerurls, r->n_peerurls, r->id)) e = &ERR_PEER_URL_EXIST;
  member_list_free(&l);
  if (e) return rpc_fail_with(call, e);
  strlist urls = {r->peerurls, r->n_peerurls};
  propose_change(n, call, CHANGE_UPDATE, RAFT_CC_UPDATE, r->id, &urls, learner);
}

/* ---------------------------------------------------------------- promote */

static const rpc_error *promote_check(node *n, uint64_t id) {
  member_list l;
  member_cache_copy(&n->members, &l, NULL);
  const member *m = member_list_find(&l, id);
  const rpc_error *e = !m ? &ERR_MEMBER_NOT_FOUND : !m->is_learner ? &ERR_MEMBER_NOT_LEARNER : NULL;
  member_list_free(&l);
  if (e) return e;
  /* etcd: the learner's log must be within 10% of the leader's. */
  raftnode_view v;
  raftnode_get_view(n->rn, &v);
  uint64_t leader_match = 0, learner_match = 0;
  for (uint32_t i = 0; i < v.n_peers; i++) {
    if (v.peers[i].id == n->member_id) leader_match = v.peers[i].match;
    if (v.peers[i].id == id) learner_match = v.peers[i].match;
  }
  if (leader_match == 0 || (double)learner_match < (double)leader_match * 0.9) return &ERR_LEARNER_NOT_READY;
  return NULL;
}

typedef struct {
  rpc_call *call;
} forwarded;

static void promote_forwarded(void *arg, rpc_code code, const char *message, const ProtobufCMessage *resp) {
  forwarded *f = arg;
  if (code == RPC_OK) rpc_reply(f->call, resp);
  else rpc_fail(f->call, code, message);
  free(f);
}

static void member_promote_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *msg) {
  node *n = ctx;
  const Etcdserverpb__MemberPromoteRequest *r = (const Etcdserverpb__MemberPromoteRequest *)msg;
  uint64_t lead = raftnode_lead(n->rn);
  if (lead == 0) return rpc_fail_with(call, &ERR_NO_LEADER);
  if (lead != n->member_id) {
    forwarded *f = xmalloc(sizeof *f);
    f->call = call;
    transport_call(n->tr, lead, "/synodpb.Peer/MemberPromote", msg, &etcdserverpb__member_promote_response__descriptor,
                   pipeline_request_timeout_ms(n), promote_forwarded, f);
    return;
  }
  const rpc_error *e = promote_check(n, r->id);
  if (e) return rpc_fail_with(call, e);
  propose_change(n, call, CHANGE_PROMOTE, RAFT_CC_ADD_VOTER, r->id, NULL, false);
}

/* On the leader, a promotion forwarded by a follower. */
static void peer_promote_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *msg) {
  node *n = ctx;
  if (raftnode_lead(n->rn) != n->member_id) return rpc_fail_with(call, &ERR_NOT_LEADER);
  member_promote_rpc(ctx, call, msg);
}

/* ---------------------------------------------------------------- peers */

static void peer_members_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  (void)m;
  node *n = ctx;
  arena *a = arena_new();
  member_list l;
  member_cache_copy(&n->members, &l, NULL);
  Synodpb__MembersResponse resp = SYNODPB__MEMBERS_RESPONSE__INIT;
  resp.cluster_id = n->cluster_id;
  resp.members = members_msg(a, &l);
  resp.n_members = l.n;
  resp.leader = n->rn ? raftnode_lead(n->rn) : 0;
  rpc_reply(call, &resp.base);
  member_list_free(&l);
  arena_free(a);
}

size_t cluster_service_methods(node *n, rpc_method *out) {
  const rpc_method m[] = {
      {"/etcdserverpb.Cluster/MemberList", &etcdserverpb__member_list_request__descriptor, member_list_rpc, NULL, false, n},
      {"/etcdserverpb.Cluster/MemberAdd", &etcdserverpb__member_add_request__descriptor, member_add_rpc, NULL, false, n},
      {"/etcdserverpb.Cluster/MemberRemove", &etcdserverpb__member_remove_request__descriptor, member_remove_rpc, NULL, false, n},
      {"/etcdserverpb.Cluster/MemberUpdate", &etcdserverpb__member_update_request__descriptor, member_update_rpc, NULL, false, n},
      {"/etcdserverpb.Cluster/MemberPromote", &etcdserverpb__member_promote_request__descriptor, member_promote_rpc, NULL, false, n},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) out[i] = m[i];
  return sizeof m / sizeof m[0];
}

size_t peer_service_methods(node *n, rpc_method *out) {
  out[0] = (rpc_method){"/synodpb.Peer/Members", &synodpb__members_request__descriptor, peer_members_rpc, NULL, false, n};
  out[1] = (rpc_method){"/synodpb.Peer/MemberPromote", &etcdserverpb__member_promote_request__descriptor,
                        peer_promote_rpc, NULL, false, n};
  return 2;
}
