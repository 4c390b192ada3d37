#!/usr/bin/perl
# Test support for tests/ports: opens TCP/UDP sockets in states Deno cannot create itself
# (bound but not listening, bound before connect, IPv6-only) and holds them until stdin closes.
#
# Arguments, applied in order:
#   name:NAME             set the process name (comm) shown by `ss -p`
#   listen:ADDR:PORT      TCP, SO_REUSEADDR, bind, listen (ADDR: 0.0.0.0, 127.0.0.1, [::], [::1])
#   listen6only:PORT      TCP on [::]:PORT with IPV6_V6ONLY=1, listening
#   bound:ADDR:PORT       TCP bind without SO_REUSEADDR, never listens
#   boundreuse:ADDR:PORT  TCP bind with SO_REUSEADDR, never listens
#   udp:ADDR:PORT         UDP bind
#   connect:LPORT:RPORT   TCP bound to 127.0.0.1:LPORT (no SO_REUSEADDR), connected to
#                         127.0.0.1:RPORT (a listener this helper opens and accepts on)
#   timewait:LPORT:RPORT  like connect, then the client closes first: 127.0.0.1:LPORT sits in
#                         TIME_WAIT (no SO_REUSEADDR) for a minute after
#   listendev:IFACE:ADDR:PORT  like listen, bound to network interface IFACE (SO_BINDTODEVICE)
#   fork:N                fork N children sharing every socket (like nginx workers)
# Prints "ready" once everything is open, then waits for EOF on stdin.
use strict;
use warnings;
use Socket qw(PF_INET PF_INET6 SOCK_STREAM SOCK_DGRAM SOL_SOCKET SO_REUSEADDR IPPROTO_IPV6
  IPV6_V6ONLY INADDR_ANY inet_pton pack_sockaddr_in pack_sockaddr_in6 AF_INET AF_INET6);

use constant SO_BINDTODEVICE => 25;    # Linux; not exported by Socket.pm

$| = 1;
my @keep;

sub addr {
  my ($host, $port) = @_;
  if ($host =~ /:/) {
    return (PF_INET6, pack_sockaddr_in6($port, inet_pton(AF_INET6, $host)));
  }
  return (PF_INET, pack_sockaddr_in($port, inet_pton(AF_INET, $host)));
}

sub open_tcp {
  my ($host, $port, %o) = @_;
  my ($pf, $sa) = addr($host, $port);
  socket(my $s, $pf, SOCK_STREAM, 0) or die "socket: $!";
  setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) or die "reuse: $!" if $o{reuse};
  setsockopt($s, IPPROTO_IPV6, IPV6_V6ONLY, 1) or die "v6only: $!" if $o{v6only};
  setsockopt($s, SOL_SOCKET, SO_BINDTODEVICE, $o{dev}) or die "bindtodevice: $!" if $o{dev};
  bind($s, $sa) or die "bind $host:$port: $!";
  listen($s, 16) or die "listen $host:$port: $!" if $o{listen};
  push @keep, $s;
  return $s;
}

sub split_addr {
  my ($spec) = @_;
  return ($1, $2) if $spec =~ /^\[(.*)\]:(\d+)$/;
  return ($1, $2) if $spec =~ /^([^:]*):(\d+)$/;
  die "bad address '$spec' (IPv6 in brackets: [::1]:80)";
}

for my $arg (@ARGV) {
  my ($kind, $rest) = split /:/, $arg, 2;
  if ($kind eq 'name') {
    $0 = $rest;
  } elsif ($kind eq 'listen') {
    open_tcp(split_addr($rest), reuse => 1, listen => 1);
  } elsif ($kind eq 'listendev') {
    my ($dev, $spec) = split /:/, $rest, 2;
    open_tcp(split_addr($spec), reuse => 1, listen => 1, dev => $dev);
  } elsif ($kind eq 'listen6only') {
    open_tcp('::', $rest, reuse => 1, listen => 1, v6only => 1);
  } elsif ($kind eq 'bound') {
    open_tcp(split_addr($rest));
  } elsif ($kind eq 'boundreuse') {
    open_tcp(split_addr($rest), reuse => 1);
  } elsif ($kind eq 'udp') {
    my ($host, $port) = split_addr($rest);
    my ($pf, $sa) = addr($host, $port);
    socket(my $s, $pf, SOCK_DGRAM, 0) or die "socket: $!";
    bind($s, $sa) or die "bind udp $host:$port: $!";
    push @keep, $s;
  } elsif ($kind eq 'connect') {
    my ($lport, $rport) = split /:/, $rest;
    my $server = open_tcp('127.0.0.1', $rport, reuse => 1, listen => 1);
    my $client = open_tcp('127.0.0.1', $lport);
    connect($client, pack_sockaddr_in($rport, inet_pton(AF_INET, '127.0.0.1'))) or die "connect: $!";
    accept(my $peer, $server) or die "accept: $!";
    push @keep, $peer;
  } elsif ($kind eq 'timewait') {
    my ($lport, $rport) = split /:/, $rest;
    my $server = open_tcp('127.0.0.1', $rport, reuse => 1, listen => 1);
    socket(my $client, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
    bind($client, pack_sockaddr_in($lport, inet_pton(AF_INET, '127.0.0.1'))) or die "bind: $!";
    connect($client, pack_sockaddr_in($rport, inet_pton(AF_INET, '127.0.0.1'))) or die "connect: $!";
    accept(my $peer, $server) or die "accept: $!";
    close($client);
    sysread($peer, my $buf, 1);    # EOF: the client's FIN arrived
    close($peer);
    select(undef, undef, undef, 0.2);    # the last ACK moves the client into TIME_WAIT
  } elsif ($kind eq 'fork') {
    for (1 .. $rest) {
      my $pid = fork() // die "fork: $!";
      if ($pid == 0) { 1 while <STDIN>; exit 0; }
    }
  } else {
    die "unknown spec '$arg'";
  }
}
print "ready\n";
1 while <STDIN>;
