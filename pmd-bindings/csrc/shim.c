/* Exported wrappers around DPDK's inline functions (rx/tx burst, mbuf operations, TSC, errno).
 * Each one only forwards its arguments; the safety contracts are those of the wrapped function and are
 * upheld by the Rust callers in src/. */
#include "wrapper.h"

uint16_t shim_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t shim_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *shim_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

int shim_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int n)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, n);
}

void shim_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

/* Full copies of single-segment mbufs, the buffers taken from mp in one bulk get: out[i] becomes a copy of
 * src[i] (same headroom, length and port; offload flags, packet type and VLAN tags cleared). Returns 0, or
 * -1 with nothing taken when mp has fewer than n free mbufs. The caller guarantees that each src[i] is one
 * segment from a pool with mp's buffer size, so data_off + data_len fits the copy. Mbufs taken raw from a
 * pool already have refcnt 1, nb_segs 1 and next NULL (see rte_mbuf_raw_alloc). Only the first cache line
 * of the header is written, as PMDs do on receive: the second (tx_offload and the like) is read by a PMD
 * only when ol_flags asks for an offload, and ol_flags is cleared. */
int shim_copy_bulk(struct rte_mempool *mp, struct rte_mbuf *const *src, struct rte_mbuf **out, unsigned int n)
{
	if (rte_mempool_get_bulk(mp, (void **)out, n) < 0)
		return -1;
	for (unsigned int i = 0; i < n; i++) {
		const struct rte_mbuf *s = src[i];
		struct rte_mbuf *d = out[i];
		__rte_mbuf_raw_sanity_check(d);
		d->data_off = s->data_off;
		d->port = s->port;
		d->ol_flags &= RTE_MBUF_F_EXTERNAL;
		d->packet_type = 0;
		d->pkt_len = s->data_len;
		d->data_len = s->data_len;
		d->vlan_tci = 0;
		d->vlan_tci_outer = 0;
		rte_memcpy(rte_pktmbuf_mtod(d, char *), rte_pktmbuf_mtod(s, const char *), s->data_len);
	}
	return 0;
}

struct rte_mbuf *shim_pktmbuf_clone(struct rte_mbuf *m, struct rte_mempool *mp)
{
	return rte_pktmbuf_clone(m, mp);
}

char *shim_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_prepend(m, len); }
char *shim_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
char *shim_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_adj(m, len); }
int shim_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
uint16_t shim_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
uint16_t shim_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
int shim_pktmbuf_is_contiguous(const struct rte_mbuf *m) { return rte_pktmbuf_is_contiguous(m); }
uint64_t shim_rdtsc(void) { return rte_rdtsc(); }
int shim_errno(void) { return rte_errno; }
unsigned int shim_lcore_id(void) { return rte_lcore_id(); }
const char *shim_version(void) { return rte_version(); }
