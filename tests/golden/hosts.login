127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
198.18.1.2	login
198.18.2.2	gateway
