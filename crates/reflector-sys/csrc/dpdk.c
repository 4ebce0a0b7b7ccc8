/* The DPDK calls reflector makes, as plain functions: the hot-path ones (rx/tx bursts, mbuf
 * data) are static inline in DPDK's headers, and the set-up ones take structures whose layout
 * changes between releases, so Rust calls these instead (crates/reflector-sys/src/dpdk.rs).
 * Built by build.rs against `pkg-config libdpdk` (>= 22.11) with the `dpdk` feature. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mbuf_pool_ops.h>

int rfl_errno(void) { return rte_errno; }

const char *rfl_strerror(int err) { return rte_strerror(err); }

int rfl_eal_init(int argc, char **argv) { return rte_eal_init(argc, argv); }

int rfl_eal_cleanup(void) { return rte_eal_cleanup(); }

uint16_t rfl_port_count(void) { return rte_eth_dev_count_avail(); }

/* The port called `name` (a vdev's name or a PCI address), or a negative errno. */
int rfl_port_by_name(const char *name) {
    uint16_t port;
    int r = rte_eth_dev_get_port_by_name(name, &port);
    return r < 0 ? r : port;
}

/* The `index`th available port's name into `name` (at most `len` bytes with the NUL); its id,
 * or -ENODEV past the last. */
int rfl_port_nth(uint16_t index, char *name, size_t len) {
    uint16_t port, i = 0;
    RTE_ETH_FOREACH_DEV(port) {
        if (i++ == index) {
            char full[RTE_ETH_NAME_MAX_LEN];
            int r = rte_eth_dev_get_name_by_port(port, full);
            if (r < 0) return r;
            snprintf(name, len, "%s", full);
            return port;
        }
    }
    return -ENODEV;
}

/* The driver's name, the receive queues it can have, its MAC and link speed (Mb/s, 0 when
 * unknown or down). */
int rfl_port_info(uint16_t port, char *driver, size_t len, uint16_t *max_rx_queues,
                  uint8_t mac[6], uint32_t *speed_mbps) {
    struct rte_eth_dev_info info;
    int r = rte_eth_dev_info_get(port, &info);
    if (r < 0) return r;
    snprintf(driver, len, "%s", info.driver_name ? info.driver_name : "?");
    *max_rx_queues = info.max_rx_queues;
    struct rte_ether_addr addr;
    r = rte_eth_macaddr_get(port, &addr);
    if (r < 0) return r;
    memcpy(mac, addr.addr_bytes, 6);
    struct rte_eth_link link;
    memset(&link, 0, sizeof link);
    *speed_mbps = rte_eth_link_get_nowait(port, &link) == 0 && link.link_status &&
                  link.link_speed != RTE_ETH_SPEED_NUM_UNKNOWN ? link.link_speed : 0;
    return 0;
}

/* A pool of `mbufs` packet buffers (each 2 KiB of data room and headroom) named `name`, on the
 * port's NUMA node; NULL and rte_errno on failure.
 *
 * For DPDK 22.11's net_af_xdp the buffers are packed back to back in one piece of memory: the
 * driver registers the pool's memory with the kernel as its UMEM, from the first buffer on and
 * as long as the buffers' count times their size. A pool made the usual way keeps each buffer
 * within a page (without hugepages, one 2.3 KiB buffer per 4 KiB page), so the UMEM covered
 * only the first 58 % of the pool, and every buffer beyond it that the driver gave the kernel
 * to receive into was lost: receiving stopped after 9 472 frames with 16 384 buffers. The
 * kernel needs no physical contiguity (it maps the UMEM page by page); a NIC's DMA would, so
 * other ports keep DPDK's usual pool. */
struct rte_mempool *rfl_pool_create(const char *name, uint32_t mbufs, uint16_t port) {
    int socket = rte_eth_dev_socket_id(port);
    if (socket < 0) socket = (int)rte_socket_id();
    struct rte_eth_dev_info info;
    int packed = rte_eth_dev_info_get(port, &info) == 0 && info.driver_name &&
                 strcmp(info.driver_name, "net_af_xdp") == 0;
    if (!packed)
        return rte_pktmbuf_pool_create(name, mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
    struct rte_pktmbuf_pool_private priv = {
        .mbuf_data_room_size = RTE_MBUF_DEFAULT_BUF_SIZE,
        .mbuf_priv_size = 0,
    };
    struct rte_mempool *mp = rte_mempool_create_empty(
        name, mbufs, sizeof(struct rte_mbuf) + RTE_MBUF_DEFAULT_BUF_SIZE, 256, sizeof priv, socket,
        RTE_MEMPOOL_F_NO_IOVA_CONTIG);
    if (!mp) return NULL;
    int r = rte_mempool_set_ops_byname(mp, rte_mbuf_best_mempool_ops(), NULL);
    if (r == 0) {
        rte_pktmbuf_pool_init(mp, &priv);
        r = rte_mempool_populate_default(mp);
        /* In more than one piece the UMEM would again miss buffers. */
        if (r >= 0 && mp->nb_mem_chunks != 1) r = -ENOMEM;
    }
    if (r < 0) {
        rte_mempool_free(mp);
        rte_errno = -r;
        return NULL;
    }
    rte_mempool_obj_iter(mp, rte_pktmbuf_init, NULL);
    return mp;
}

void rfl_pool_free(struct rte_mempool *pool) { rte_mempool_free(pool); }

/* Configures `queues` receive and transmit queues of `ring` descriptors each (RSS over them
 * when more than one and `rss`), receiving into `pool`, in promiscuous mode, and starts the
 * port. */
int rfl_port_start(uint16_t port, uint16_t queues, uint16_t ring, struct rte_mempool *pool, int rss) {
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof conf);
    if (queues > 1 && rss) {
        struct rte_eth_dev_info info;
        int r = rte_eth_dev_info_get(port, &info);
        if (r < 0) return r;
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
    }
    int r = rte_eth_dev_configure(port, queues, queues, &conf);
    if (r < 0) return r;
    uint16_t rx = ring, tx = ring;
    r = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx, &tx);
    if (r < 0) return r;
    int socket = rte_eth_dev_socket_id(port);
    for (uint16_t q = 0; q < queues; q++) {
        if ((r = rte_eth_rx_queue_setup(port, q, rx, socket, NULL, pool)) < 0) return r;
        if ((r = rte_eth_tx_queue_setup(port, q, tx, socket, NULL)) < 0) return r;
    }
    if ((r = rte_eth_dev_start(port)) < 0) return r;
    /* Some virtual devices cannot be promiscuous; frames to the port's MAC still come. */
    (void)rte_eth_promiscuous_enable(port);
    return 0;
}

int rfl_port_stop(uint16_t port) {
    int r = rte_eth_dev_stop(port);
    int c = rte_eth_dev_close(port);
    return r < 0 ? r : c;
}

/* ipackets, opackets, imissed, ierrors, oerrors, rx_nombuf. */
int rfl_port_stats(uint16_t port, uint64_t out[6]) {
    struct rte_eth_stats s;
    int r = rte_eth_stats_get(port, &s);
    if (r < 0) return r;
    out[0] = s.ipackets; out[1] = s.opackets; out[2] = s.imissed;
    out[3] = s.ierrors; out[4] = s.oerrors; out[5] = s.rx_nombuf;
    return 0;
}

uint16_t rfl_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t rfl_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_tx_burst(port, queue, pkts, n);
}

/* The first segment's data, its length, and the room after it; the number of segments. */
uint8_t *rfl_mbuf_data(struct rte_mbuf *m, uint16_t *len, uint16_t *room, uint16_t *segments) {
    *len = rte_pktmbuf_data_len(m);
    *room = rte_pktmbuf_tailroom(m);
    *segments = m->nb_segs;
    return rte_pktmbuf_mtod(m, uint8_t *);
}

/* Sets a one-segment mbuf's length (within its data and the room after it); -EINVAL when it
 * does not fit. */
int rfl_mbuf_set_len(struct rte_mbuf *m, uint16_t len) {
    if (m->nb_segs != 1 || len > rte_pktmbuf_data_len(m) + rte_pktmbuf_tailroom(m)) return -EINVAL;
    m->data_len = len;
    m->pkt_len = len;
    return 0;
}

/* A new one-segment mbuf from `pool` holding `len` bytes of `data`; NULL when the pool is
 * empty or it does not fit. */
struct rte_mbuf *rfl_mbuf_from(struct rte_mempool *pool, const uint8_t *data, uint16_t len) {
    struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
    if (!m) return NULL;
    char *at = rte_pktmbuf_append(m, len);
    if (!at) { rte_pktmbuf_free(m); return NULL; }
    memcpy(at, data, len);
    return m;
}

void rfl_mbuf_free(struct rte_mbuf **pkts, unsigned n) { rte_pktmbuf_free_bulk(pkts, n); }

/* Adds the virtual device `name` with the arguments `args` (as a --vdev would, after the
 * start); its port id, or a negative errno. */
int rfl_vdev_add(const char *name, const char *args) {
    int r = rte_eal_hotplug_add("vdev", name, args);
    if (r < 0) return r;
    return rfl_port_by_name(name);
}

/* What DPDK printed (its usage text goes to stdout) out of the C library's buffers. */
void rfl_flush(void) {
    fflush(stdout);
    fflush(stderr);
}

/* The cycle counter as dpdk-testpmd's --record-core-cycles reads it (the TSC on x86), and its
 * rate in Hz (measured by the EAL at its start). */
uint64_t rfl_cycles(void) { return rte_rdtsc(); }

uint64_t rfl_cycles_hz(void) { return rte_get_tsc_hz(); }
