/* Lease log entries on the apply thread. The lease module does the work
 * (store and table in step); this file maps requests and errors to etcd's
 * messages. The clock is read for local deadlines only: what reaches the
 * store depends on the entry alone. */
#include "errors.h"
#include "lease_service.h"

const rpc_error *lease_service_error(int rc) {
  switch (rc) {
    case LEASE_OK: return NULL;
    case LEASE_ENOTFOUND: return &ERR_LEASE_NOT_FOUND;
    case LEASE_EEXIST: return &ERR_LEASE_EXIST;
    case LEASE_ETTL: return &ERR_LEASE_TTL_TOO_LARGE;
    case LEASE_ENOTPRIMARY: return &ERR_NO_LEADER;
    default: return &ERR_INTERNAL;
  }
}

bool lease_service_exists(void *node_arg, int64_t id) {
  node *n = node_arg;
  return lease_exists(n->lease->table, id);
}

static Etcdserverpb__ResponseHeader *header(arena *mem) {
  Etcdserverpb__ResponseHeader *h = arena_alloc(mem, sizeof *h);
  etcdserverpb__response_header__init(h);
  return h;
}

const rpc_error *lease_service_apply(node *n, arena *mem, mvcc_txn *w, const Synodpb__Request *req,
                                     ProtobufCMessage **resp, Etcdserverpb__ResponseHeader ***hdr) {
  lease_table *t = n->lease->table;
  int64_t now = time_mono_ns();
  int rc = LEASE_OK;
  switch (req->op_case) {
    case SYNODPB__REQUEST__OP_LEASE_GRANT: {
      const Etcdserverpb__LeaseGrantRequest *g = req->lease_grant;
      rc = lease_apply_grant(t, w, g->id, g->ttl, now);
      if (rc) break;
      Etcdserverpb__LeaseGrantResponse *r = arena_alloc(mem, sizeof *r);
      etcdserverpb__lease_grant_response__init(r);
      r->header = header(mem);
      r->id = g->id;
      r->ttl = g->ttl;
      *resp = &r->base;
      *hdr = &r->header;
      break;
    }
    case SYNODPB__REQUEST__OP_LEASE_REVOKE: {
      rc = lease_apply_revoke(t, w, req->lease_revoke->id);
      if (rc) break;
      Etcdserverpb__LeaseRevokeResponse *r = arena_alloc(mem, sizeof *r);
      etcdserverpb__lease_revoke_response__init(r);
      r->header = header(mem);
      *resp = &r->base;
      *hdr = &r->header;
      break;
    }
    case SYNODPB__REQUEST__OP_LEASE_CHECKPOINT: {
      const Etcdserverpb__LeaseCheckpointRequest *c = req->lease_checkpoint;
      lease_checkpoint *cps = arena_alloc(mem, (c->n_checkpoints ? c->n_checkpoints : 1) * sizeof *cps);
      for (size_t i = 0; i < c->n_checkpoints; i++)
        cps[i] = (lease_checkpoint){c->checkpoints[i]->id, c->checkpoints[i]->remaining_ttl};
      rc = lease_apply_checkpoints(t, w, cps, c->n_checkpoints, now);
      if (rc) break;
      Etcdserverpb__LeaseCheckpointResponse *r = arena_alloc(mem, sizeof *r);
      etcdserverpb__lease_checkpoint_response__init(r);
      r->header = header(mem);
      *resp = &r->base;
      *hdr = &r->header;
      break;
    }
    default:
      return &ERR_NOT_SUPPORTED_YET;
  }
  return lease_service_error(rc);
}
