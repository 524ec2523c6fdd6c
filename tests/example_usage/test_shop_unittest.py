"""The shop's tasks, tested unittest-style with ``mock_api()``."""

import unittest

from celery_svcjwt.testing import mock_api

from .shop.tasks import fetch_item, restock


class WithTheContextManager(unittest.TestCase):
    def test_fetch_item(self):
        with mock_api() as api:
            api.get("items/1/", json={"id": 1, "name": "bolt"})
            self.assertEqual(fetch_item.apply(args=(1,)).get(), {"id": 1, "name": "bolt"})
        self.assertEqual(api.calls[0].request.url, "https://inventory.example.com/v2/items/1/")


class WithSetUp(unittest.TestCase):
    def setUp(self):
        self.api = mock_api()
        self.api.start()
        self.addCleanup(self.api.stop)

    def test_restock(self):
        self.api.post("items/3/restock/", json={"stock": 12})
        self.assertEqual(restock.apply(args=(3, 10)).get(), 12)

    def test_refresh(self):
        self.api.get("items/1/", json={"id": 1})
        fetch_item(1)
        self.api.expire_token()
        fetch_item(1)
        self.assertEqual((self.api.logins, self.api.refreshes), (1, 1))


@mock_api()
class WithTheClassDecorator(unittest.TestCase):
    """Each test method gets its own mock as its last argument, as with unittest.mock.patch."""

    def test_one(self, api):
        api.get("items/1/", json={"id": 1})
        self.assertEqual(fetch_item(1), {"id": 1})

    def test_two(self, api):
        self.assertEqual(len(api.registered()), 0)  # a fresh mock
        api.get("items/2/", json={"id": 2})
        self.assertEqual(fetch_item(2), {"id": 2})


class WithTheMethodDecorator(unittest.TestCase):
    @mock_api(assert_all_requests_are_fired=True)
    def test_fetch_item(self, api):
        api.get("items/1/", json={"id": 1})
        self.assertEqual(fetch_item(1), {"id": 1})
