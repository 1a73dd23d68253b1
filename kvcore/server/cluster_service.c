/* etcdserverpb.Cluster for a single member: the member list. Membership
 * changes arrive with the replicated cluster. */
#include "errors.h"
#include "node.h"
#include "services.h"

static void member_list_rpc(void *ctx, rpc_call *call, const ProtobufCMessage *m) {
  (void)m;
  node *n = ctx;
  Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
  node_fill_header(n, &hdr);
  Etcdserverpb__Member self = ETCDSERVERPB__MEMBER__INIT;
  self.id = n->member_id;
  self.name = n->cfg.name;
  self.peerurls = n->cfg.initial_advertise_peer_urls.v;
  self.n_peerurls = n->cfg.initial_advertise_peer_urls.n;
  self.clienturls = n->cfg.advertise_client_urls.v;
  self.n_clienturls = n->cfg.advertise_client_urls.n;
  Etcdserverpb__Member *members[1] = {&self};
  Etcdserverpb__MemberListResponse resp = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
  resp.header = &hdr;
  resp.members = members;
  resp.n_members = 1;
  rpc_reply(call, &resp.base);
}

size_t cluster_service_methods(node *n, rpc_method *out) {
  out[0] = (rpc_method){"/etcdserverpb.Cluster/MemberList", &etcdserverpb__member_list_request__descriptor,
                        member_list_rpc, NULL, false, n};
  return 1;
}
